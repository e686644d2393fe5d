"""The chart on the real API server: helm install / upgrade / test / uninstall, RBAC checked with `kubectl auth
can-i`, and the operator and gateway run as local processes with exactly the env the chart rendered for their
Deployments, authenticated as the chart's ServiceAccounts (token + cluster CA), so the chart's RBAC is what
they really get. kwok runs no containers: it marks the Deployments' pods Ready and the `helm test` pod
Succeeded; the gateway's /api/functions answer is checked against the local gateway process instead.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.cluster import Cluster, service_account_kubeconfig, wait_for
from harness.helm import CHART
from harness.helm import helm as run_helm
from harness.operator import sammodel
from harness.processes import VENV_BIN, ManagedProcess, free_port, http_get
from harness.sam import wait_condition

pytestmark = pytest.mark.cluster


def helm(cluster: Cluster, *args: str, check: bool = True, timeout: float = 180) -> str:
    """helm against the test cluster; its stdout and stderr (NOTES, test results) as one text."""
    proc = run_helm(*args, cluster=cluster, check=check, timeout=timeout)
    return proc.stdout + proc.stderr


def can_i(cluster: Cluster, sa: str, verb: str, resource: str, *args: str) -> bool:
    """`kubectl auth can-i` as the ServiceAccount; ``resource`` may name a subresource (``sammodels.x/status``)."""
    resource, _, sub = resource.partition("/")
    extra = [f"--subresource={sub}"] if sub else []
    out = cluster.kubectl("auth", "can-i", f"--as={sa}", verb, resource, *extra, *args, check=False)
    return out.stdout.strip() == "yes"


def access_review(cluster: Cluster, user: str, verb: str, group: str, resource: str, namespace: str) -> bool:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "groups": ["system:serviceaccounts", "system:authenticated"],
            "resourceAttributes": {"verb": verb, "group": group, "resource": resource, "namespace": namespace},
        },
    }
    out = cluster.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(review)).stdout
    return bool(json.loads(out)["status"].get("allowed"))


def token_kubeconfig(cluster: Cluster, namespace: str, service_account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount (bound token) against the same API server + CA."""
    token = cluster.kubectl("create", "token", service_account, "-n", namespace, "--duration=1h").stdout.strip()
    return service_account_kubeconfig(cluster.kubeconfig, service_account, token, path)


def deployment_env(cluster: Cluster, namespace: str, name: str) -> dict[str, str]:
    """The plain env of the Deployment's container as the API server stores it (what the pod would get)."""
    deployment = cluster.get_json("deployment", name, "-n", namespace)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def command_of(cluster: Cluster, namespace: str, name: str) -> list[str]:
    deployment = cluster.get_json("deployment", name, "-n", namespace)
    command: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    return command


def local_operator(
    cluster: Cluster, namespace: str, release: str, kubeconfig: Path, log_dir: Path
) -> tuple[ManagedProcess, int, int]:
    env = deployment_env(cluster, namespace, f"{release}-sam-operator")
    metrics, health = free_port(), free_port()
    env.update(
        {  # only the listen addresses differ from the pod: loopback + free ports
            "SAM_OPERATOR_METRICS_HOST": "127.0.0.1",
            "SAM_OPERATOR_METRICS_PORT": str(metrics),
            "SAM_OPERATOR_HEALTH_HOST": "127.0.0.1",
            "SAM_OPERATOR_HEALTH_PORT": str(health),
            "KUBECONFIG": str(kubeconfig),
        }
    )
    (entry,) = command_of(cluster, namespace, f"{release}-sam-operator")
    proc = ManagedProcess(f"operator-{release}", [str(VENV_BIN / entry)], env, log_dir)
    return proc, metrics, health


def local_gateway(
    cluster: Cluster, namespace: str, release: str, kubeconfig: Path, log_dir: Path
) -> tuple[ManagedProcess, int]:
    env = deployment_env(cluster, namespace, f"{release}-sam-operator-gateway")
    port = free_port()
    env.update(
        {
            "SAM_GATEWAY_HOST": "127.0.0.1",
            "SAM_GATEWAY_PORT": str(port),
            "SAM_GATEWAY_KUBECONFIG": str(kubeconfig),
            "KUBECONFIG": str(kubeconfig),
        }
    )
    (entry,) = command_of(cluster, namespace, f"{release}-sam-operator-gateway")
    proc = ManagedProcess(f"gateway-{release}", [str(VENV_BIN / entry)], env, log_dir)
    return proc, port


def assert_no_forbidden(proc: ManagedProcess) -> None:
    """No HTTP 403 from the API server: "Forbidden" in any case, or a 403 that is a status (not the
    milliseconds of a log timestamp such as "10:34:46,403", nor part of a port number)."""
    log = proc.output()
    assert not re.search(r"forbidden", log, re.IGNORECASE), log[-4000:]
    assert not re.search(r"(?<![\d,.:])403(?!\d)", log), log[-4000:]


@pytest.fixture
def release_name() -> str:
    return f"sam{uuid.uuid4().hex[:6]}"


@pytest.fixture
def other_namespace(cluster: Cluster) -> Iterator[str]:
    with cluster.namespace(prefix="chart-models") as ns:
        yield ns


def test_install_upgrade_test_uninstall_with_rbac_exercised_by_local_processes(
    cluster: Cluster, namespace: str, other_namespace: str, release_name: str, tmp_path: Path
) -> None:
    rel, ns = release_name, namespace
    operator_sa = f"system:serviceaccount:{ns}:{rel}-sam-operator"
    gateway_sa = f"system:serviceaccount:{ns}:{rel}-sam-operator-gateway"
    out = helm(cluster, "install", rel, str(CHART), "-n", ns, "--wait", "--timeout", "120s")
    try:
        # NOTES tell the next command.
        assert "kubectl get sam" in out and "kubectl apply" in out and "CVAT_NUCLIO_HOST" in out
        # The CRD came from the chart's crds/ (or was already there: Helm never touches an existing one).
        cluster.kubectl("wait", "--for=condition=Established", "crd/sammodels.samoperator.io", "--timeout=60s")
        for deployment in (f"{rel}-sam-operator", f"{rel}-sam-operator-gateway"):
            cluster.kubectl("rollout", "status", f"deployment/{deployment}", "-n", ns, "--timeout=60s")
        dashboards = cluster.get_json("configmaps", "-n", ns, "-l", "grafana_dashboard=1")["items"]
        assert len(dashboards) == 3

        # ---- RBAC: what the operator needs, cluster-wide (another namespace than the release's).
        for verb, resource in [
            ("get", "sammodels.samoperator.io"),
            ("list", "sammodels.samoperator.io"),
            ("watch", "sammodels.samoperator.io"),
            ("patch", "sammodels.samoperator.io/status"),
            ("create", "deployments.apps"),
            ("patch", "deployments.apps"),
            ("delete", "deployments.apps"),
            ("watch", "deployments.apps"),
            ("list", "pods"),
            ("watch", "pods"),
            ("create", "services"),
            ("patch", "services"),
            ("create", "persistentvolumeclaims"),
            ("create", "poddisruptionbudgets.policy"),
            ("create", "horizontalpodautoscalers.autoscaling"),
            ("create", "networkpolicies.networking.k8s.io"),
            ("create", "events"),
        ]:
            assert can_i(cluster, operator_sa, verb, resource, "-n", other_namespace), (verb, resource)
        # kubectl auth can-i needs discovery to know a resource; ServiceMonitor's CRD is absent here, so ask the
        # authorizer directly (the operator writes them only where the API exists).
        for verb in ("get", "create", "patch", "delete"):
            assert access_review(
                cluster, operator_sa, verb, "monitoring.coreos.com", "servicemonitors", other_namespace
            ), verb
        # ... and what it must not do.
        for args in [
            ("get", "secrets"),
            ("list", "secrets", "-A"),
            ("list", "configmaps"),
            ("delete", "nodes"),
            ("create", "clusterroles"),
            ("bind", "clusterroles"),
            ("create", "sammodels.samoperator.io"),
            ("delete", "sammodels.samoperator.io"),
            ("patch", "sammodels.samoperator.io"),
            ("delete", "pods"),
            ("create", "pods"),
            ("create", "pods/exec"),
            ("impersonate", "serviceaccounts"),
            ("create", "customresourcedefinitions.apiextensions.k8s.io"),
            ("delete", "namespaces"),
            ("update", "deployments.apps"),
        ]:
            assert not can_i(cluster, operator_sa, *args, "-n", other_namespace), args
        for args in [("list", "sammodels.samoperator.io"), ("watch", "pods")]:
            assert can_i(cluster, gateway_sa, *args, "-n", other_namespace), args
        for args in [
            ("patch", "sammodels.samoperator.io/status"),
            ("get", "secrets"),
            ("create", "deployments.apps"),
            ("delete", "pods"),
            ("list", "services"),
        ]:
            assert not can_i(cluster, gateway_sa, *args, "-n", other_namespace), args

        # ---- The operator and gateway, with the rendered env, as the chart's ServiceAccounts.
        op_kubeconfig = token_kubeconfig(cluster, ns, f"{rel}-sam-operator", tmp_path / "operator.kubeconfig")
        gw_kubeconfig = token_kubeconfig(cluster, ns, f"{rel}-sam-operator-gateway", tmp_path / "gateway.kubeconfig")
        operator, _, health = local_operator(cluster, ns, rel, op_kubeconfig, tmp_path)
        gateway, gw_port = local_gateway(cluster, ns, rel, gw_kubeconfig, tmp_path)
        try:
            operator.start()
            operator.wait_http(f"http://127.0.0.1:{health}/healthz", timeout=60)
            gateway.start()
            gateway.wait_http(f"http://127.0.0.1:{gw_port}/readyz", timeout=60)
            cluster.apply(sammodel("charted", replicas=2), other_namespace)
            sam = wait_condition(cluster, other_namespace, "charted", "Ready", "True", timeout=90)
            function = sam["status"]["cvat"]["functionName"]

            def listed() -> dict[str, Any] | None:
                status, body = http_get(f"http://127.0.0.1:{gw_port}/api/functions")
                functions: dict[str, Any] = json.loads(body) if status == 200 else {}
                return functions if function in functions else None

            functions = wait_for(listed, 30, what="gateway lists the SamModel's function")
            assert functions[function]["metadata"]["annotations"]["type"] == "interactor"
            assert_no_forbidden(operator)
            assert_no_forbidden(gateway)
        finally:
            operator.stop()
            gateway.stop()

        # ---- helm test: kwok marks the test Job's pod Succeeded (no container runs); the hook must be well-formed and
        # admitted under Pod Security "restricted".
        out = helm(cluster, "test", rel, "-n", ns, "--timeout", "120s")
        assert "Succeeded" in out, out

        # ---- helm upgrade: new values roll out through the same objects.
        helm(
            cluster,
            "upgrade",
            rel,
            str(CHART),
            "-n",
            ns,
            "--reuse-values",
            "--set",
            "operator.logLevel=DEBUG",
            "--set",
            "gateway.replicaCount=2",
            "--wait",
            "--timeout",
            "120s",
        )
        assert deployment_env(cluster, ns, f"{rel}-sam-operator")["SAM_OPERATOR_LOG_LEVEL"] == "DEBUG"
        gateway_deployment = cluster.get_json("deployment", f"{rel}-sam-operator-gateway", "-n", ns)
        assert gateway_deployment["spec"]["replicas"] == 2
        history = json.loads(helm(cluster, "history", rel, "-n", ns, "-o", "json").split("\n")[0])
        assert [h["status"] for h in history] == ["superseded", "deployed"]
    finally:
        helm(cluster, "uninstall", rel, "-n", ns, "--wait", "--timeout", "120s", check=False)
    # Uninstall removes the cluster-scoped RBAC too; the CRD stays (Helm never deletes crds/ objects).
    assert cluster.kubectl("get", "clusterrole", f"{rel}-sam-operator", check=False).returncode != 0
    assert cluster.kubectl("get", "deployment", f"{rel}-sam-operator", "-n", ns, check=False).returncode != 0
    assert cluster.kubectl("get", "crd", "sammodels.samoperator.io").returncode == 0


def test_namespaced_rbac_serves_only_the_listed_namespaces(
    cluster: Cluster, namespace: str, other_namespace: str, release_name: str, tmp_path: Path
) -> None:
    rel, ns = release_name, namespace
    operator_sa = f"system:serviceaccount:{ns}:{rel}-sam-operator"
    helm(
        cluster,
        "install",
        rel,
        str(CHART),
        "-n",
        ns,
        "--set",
        "rbac.scope=namespaced",
        "--set",
        f"rbac.namespaces={{{other_namespace}}}",
        "--wait",
        "--timeout",
        "120s",
    )
    try:
        assert cluster.kubectl("get", "clusterrole", f"{rel}-sam-operator", check=False).returncode != 0
        assert can_i(cluster, operator_sa, "create", "deployments.apps", "-n", other_namespace)
        assert can_i(cluster, operator_sa, "patch", "sammodels.samoperator.io/status", "-n", other_namespace)
        assert not can_i(cluster, operator_sa, "create", "deployments.apps", "-n", "default")
        assert not can_i(cluster, operator_sa, "list", "sammodels.samoperator.io", "-A")
        assert not can_i(cluster, operator_sa, "list", "customresourcedefinitions.apiextensions.k8s.io")

        kubeconfig = token_kubeconfig(cluster, ns, f"{rel}-sam-operator", tmp_path / "operator.kubeconfig")
        operator, _, health = local_operator(cluster, ns, rel, kubeconfig, tmp_path)
        try:
            operator.start()
            operator.wait_http(f"http://127.0.0.1:{health}/healthz", timeout=60)
            cluster.apply(sammodel("scoped"), other_namespace)
            wait_condition(cluster, other_namespace, "scoped", "Ready", "True", timeout=90)
        finally:
            operator.stop()
        assert "Reconcile failed" not in operator.output(), operator.output()[-4000:]
    finally:
        helm(cluster, "uninstall", rel, "-n", ns, "--wait", "--timeout", "120s", check=False)
