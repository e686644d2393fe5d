"""Helpers of bench/operator_scale.py: kwok nodes, the operator process, the benchmark's watches, and the API
server's request counts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from harness.processes import free_port
from kubernetes import client, watch
from prometheus_client.parser import text_string_to_metric_families

VENV_BIN = Path(sys.executable).parent
NS = "bench"
GROUP, VERSION, PLURAL = "samoperator.io", "v1alpha1", "sammodels"
CHILD_RESOURCES = {
    "deployments",
    "services",
    "persistentvolumeclaims",
    "poddisruptionbudgets",
    "horizontalpodautoscalers",
    "networkpolicies",
    "servicemonitors",
}
PODS_PER_NODE = 250


def nodes_manifest(count: int) -> str:
    nodes = []
    for i in range(max(1, -(-count * 2 // PODS_PER_NODE))):  # room for 2 pods per SamModel (the edits)
        alloc = {"cpu": "4000", "memory": "16Ti", "ephemeral-storage": "64Ti", "pods": str(PODS_PER_NODE)}
        nodes.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": f"bench-node-{i}",
                    "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                    "labels": {
                        "kubernetes.io/hostname": f"bench-node-{i}",
                        "kubernetes.io/os": "linux",
                        "type": "kwok",
                    },
                },
                "status": {
                    "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                    "capacity": alloc,
                    "allocatable": alloc,
                    "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux"},
                },
            }
        )
    return yaml.safe_dump_all(nodes)


class Operator:
    """The operator process: the console script, or ``main()`` from another source tree."""

    def __init__(self, kubeconfig: Path, log: Path, src: str | None, env: dict[str, str]) -> None:
        self.metrics_port, self.health_port = free_port(), free_port()
        argv = [str(VENV_BIN / "sam-operator")]
        extra = {}
        if src:
            argv = [sys.executable, "-c", "from sam_operator.__main__ import main; main()"]
            extra["PYTHONPATH"] = src
        full_env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "SAM_OPERATOR_METRICS_PORT": str(self.metrics_port),
            "SAM_OPERATOR_METRICS_HOST": "127.0.0.1",
            "SAM_OPERATOR_HEALTH_PORT": str(self.health_port),
            "SAM_OPERATOR_HEALTH_HOST": "127.0.0.1",
            "NO_PROXY": "127.0.0.1,localhost",
            **extra,
            **env,
        }
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            argv,
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_healthy(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("operator not healthy")

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


class Observer:
    """The benchmark's own watches: when each Deployment first appears / carries N replicas; Ready SamModels."""

    def __init__(self, api: client.ApiClient) -> None:
        self.apps, self.custom = client.AppsV1Api(api), client.CustomObjectsApi(api)
        self.lock = threading.Lock()
        self.deployment_seen: dict[str, float] = {}
        self.replicas: dict[str, int] = {}
        self.ready: set[str] = set()
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._loop, args=(f,), daemon=True) for f in (self._deployments, self._sammodels)
        ]
        for t in self.threads:
            t.start()

    def _loop(self, fn: Callable[[], None]) -> None:
        while not self.stop.is_set():
            try:
                fn()
            except Exception:  # a dropped watch: start again
                time.sleep(0.5)

    def _deployments(self) -> None:
        rv = self.apps.list_namespaced_deployment(NS).metadata.resource_version
        for ev in watch.Watch().stream(
            self.apps.list_namespaced_deployment, NS, resource_version=rv, timeout_seconds=30, _request_timeout=60
        ):
            obj = ev["object"]
            name = obj.metadata.name.removeprefix("sam-")
            with self.lock:
                self.deployment_seen.setdefault(name, time.monotonic())
                self.replicas[name] = obj.spec.replicas
            if self.stop.is_set():
                return

    def _sammodels(self) -> None:
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)
        self._note_ready(listed["items"])
        for ev in watch.Watch().stream(
            self.custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            NS,
            PLURAL,
            resource_version=listed["metadata"]["resourceVersion"],
            timeout_seconds=30,
            _request_timeout=60,
        ):
            self._note_ready([ev["object"]])
            if self.stop.is_set():
                return

    def _note_ready(self, items: list[dict[str, Any]]) -> None:
        with self.lock:
            for obj in items:
                conds = (obj.get("status") or {}).get("conditions") or []
                ok = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)
                (self.ready.add if ok else self.ready.discard)(obj["metadata"]["name"])


def operator_request(resource: str, subresource: str, verb: str) -> bool:
    """Whether a request of this shape is the operator's (no other client makes it in this benchmark)."""
    if resource == PLURAL:  # the benchmark itself only creates (POST) and edits (PATCH) SamModels
        return verb in ("GET", "LIST") or (verb == "PATCH" and subresource == "status")
    if resource in CHILD_RESOURCES:  # the controllers write only their status subresource
        return not subresource and verb in ("GET", "LIST", "APPLY", "PATCH", "POST", "DELETE")
    return resource == "pods" and verb == "LIST"  # kcm creates pods, kwok patches them, the scheduler binds


def apiserver_requests(api: client.ApiClient) -> tuple[float, float]:
    """(requests the operator makes, discovery requests of every client) so far, from apiserver_request_total."""
    resp = api.call_api(
        "/metrics",
        "GET",
        auth_settings=["BearerToken"],
        _preload_content=False,
        _return_http_data_only=True,
        _request_timeout=30,
    )
    operator, discovery = 0.0, 0.0
    for family in text_string_to_metric_families(resp.data.decode()):
        for s in family.samples:
            if s.name != "apiserver_request_total":
                continue
            res, sub, verb = s.labels.get("resource", ""), s.labels.get("subresource", ""), s.labels.get("verb")
            if not res:
                discovery += s.value if verb == "GET" else 0
            elif operator_request(res, sub, verb or ""):
                operator += s.value
    return operator, discovery
