"""The real Kubernetes API server the integration tests talk to.

Either the local control plane that hack/cluster-up.sh starts (etcd, kube-apiserver, controller-manager,
scheduler, kwok) in a fresh folder, or an existing cluster named by SAM_TEST_KUBECONFIG (kind, for example).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

REPO = Path(__file__).resolve().parents[2]
HACK = REPO / "hack"


def k8s_bin_dir() -> Path:
    """The folder hack/build-tools.sh fills (same rule as hack/versions.sh)."""
    out = subprocess.run(
        ["bash", "-c", f"source {HACK}/versions.sh && echo $SAM_K8S_BIN"],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip())


def wait_for(predicate: Callable[[], Any], timeout: float = 30, interval: float = 0.2, what: str = "") -> Any:
    """Poll until predicate() returns a truthy value, which is returned; fail with `what` on timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the API may be briefly unavailable; keep polling
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}: {last_error!r}")


def custom_resource_definition(
    group: str, kind: str, plural: str, schema: dict[str, Any], version: str = "v1"
) -> dict[str, Any]:
    """A namespaced CRD with one served and stored version (what a test installs to make an API exist)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
            "versions": [{"name": version, "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}],
        },
    }


def service_account_kubeconfig(admin: Path, service_account: str, token: str, out: Path) -> Path:
    """A kubeconfig at ``out`` that authenticates with ``token`` (a ServiceAccount's) against the API server and CA
    of ``admin``'s current context, so that the ServiceAccount's RBAC is exactly what its user gets."""
    config = yaml.safe_load(admin.read_text())
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])["context"]
    entry = next(c for c in config["clusters"] if c["name"] == context["cluster"])["cluster"]
    ca = entry.get("certificate-authority")
    if ca and not Path(ca).is_absolute():
        entry["certificate-authority"] = str((admin.parent / ca).resolve())
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": entry}],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": service_account}}],
        "current-context": "sa",
    }
    out.write_text(yaml.safe_dump(kubeconfig))
    out.chmod(0o600)
    return out


@dataclass
class Cluster:
    """A running cluster and the tools to talk to it."""

    kubeconfig: Path
    bin_dir: Path
    work_dir: Path | None = None  # set when this process started the control plane
    api_client: client.ApiClient = field(init=False)

    def __post_init__(self) -> None:
        self.api_client = config.new_client_from_config(config_file=str(self.kubeconfig))

    @property
    def kubectl_path(self) -> str:
        local = self.bin_dir / "kubectl"
        return str(local) if local.exists() else (shutil.which("kubectl") or "kubectl")

    @property
    def helm_path(self) -> str:
        local = self.bin_dir / "helm"
        return str(local) if local.exists() else (shutil.which("helm") or "helm")

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.kubectl_path, "--kubeconfig", str(self.kubeconfig), *args],
            check=check,
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
        )

    def apply(self, manifest: dict[str, Any] | list[dict[str, Any]] | str, namespace: str | None = None) -> str:
        text = (
            manifest
            if isinstance(manifest, str)
            else yaml.safe_dump_all(manifest if isinstance(manifest, list) else [manifest])
        )
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        return self.kubectl(*args, input=text).stdout

    def get_json(self, *args: str) -> dict[str, Any]:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api_client)

    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api_client)

    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api_client)

    def events(self, namespace: str, involved_name: str | None = None) -> list[client.CoreV1Event]:
        items = self.core().list_namespaced_event(namespace).items
        return [e for e in items if involved_name is None or e.involved_object.name == involved_name]

    @contextmanager
    def namespace(self, prefix: str = "t", labels: dict[str, str] | None = None) -> Iterator[str]:
        """A fresh namespace (Pod Security `restricted` enforced), deleted afterwards."""
        name = f"{prefix[:40].rstrip('-').lower()}-{uuid.uuid4().hex[:6]}"
        meta_labels = {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
            "samoperator.io/test": "true",
            **(labels or {}),
        }
        self.core().create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=meta_labels)))
        try:
            # The ServiceAccount admission plugin rejects pods until the controller-manager made `default`.
            wait_for(
                lambda: self.core().read_namespaced_service_account("default", name),
                60,
                what=f"serviceaccount default in {name}",
            )
            yield name
        finally:
            with suppress(client.ApiException):
                self.core().delete_namespace(name)

    def close(self) -> None:
        self.api_client.close()


def start_local_cluster(work_dir: Path) -> Cluster:
    """Run hack/cluster-up.sh into work_dir (fresh ports) and return the running cluster."""
    env = dict(os.environ, SAM_CLUSTER_DIR=str(work_dir))
    for var in ("P_ETCD", "P_PEER", "P_API", "P_KCM", "P_SCHED"):
        env.pop(var, None)
    proc = subprocess.run(["bash", str(HACK / "cluster-up.sh")], env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        stop_local_cluster(work_dir)
        raise RuntimeError(f"hack/cluster-up.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return Cluster(kubeconfig=work_dir / "kubeconfig", bin_dir=k8s_bin_dir(), work_dir=work_dir)


def stop_local_cluster(work_dir: Path) -> None:
    env = dict(os.environ, SAM_CLUSTER_DIR=str(work_dir))
    subprocess.run(["bash", str(HACK / "cluster-down.sh")], env=env, capture_output=True, timeout=120)


def started_pids(work_dir: Path) -> list[int]:
    return [int(p.read_text()) for p in (work_dir / "pids").glob("*.pid")]
