"""The real API server's Pod Security admission (`restricted`, enforced on every test namespace by the harness)
admits the rendered encoder pods, and the ReplicaSet controller can create them from the rendered Deployment;
negative controls (a privileged pod, an encoder pod whose init container lost its securityContext) are refused,
which shows the namespace really enforces."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness.cluster import Cluster, wait_for
from kubernetes import client
from sam_operator.render import build_children
from sam_operator.resources import SamModel, parse_sammodel
from sam_operator.settings import OperatorSettings

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
SAMPLES = sorted((REPO / "crds" / "samples").glob("*.yaml"))


def _deployment(sample: Path, namespace: str) -> dict[str, Any]:
    body = yaml.safe_load(sample.read_text())
    body["metadata"]["namespace"] = namespace
    parsed = parse_sammodel(body)
    assert isinstance(parsed, SamModel), parsed
    (deployment,) = [c for c in build_children(parsed, OperatorSettings()) if c["kind"] == "Deployment"]
    return deployment


def _pod_from_template(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    template = copy.deepcopy(deployment["spec"]["template"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**template["metadata"], "name": name},
        "spec": template["spec"],
    }


def _rejection(cluster: Cluster, namespace: str, pod: dict[str, Any]) -> str:
    with pytest.raises(client.ApiException) as info:
        cluster.core().create_namespaced_pod(namespace, pod)
    assert info.value.status == 403, info.value.body
    return str(info.value.body)


def test_namespace_enforces_restricted(cluster: Cluster, namespace: str) -> None:
    labels = cluster.core().read_namespace(namespace).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_rendered_encoder_pod_is_admitted(cluster: Cluster, namespace: str, sample: Path) -> None:
    deployment = _deployment(sample, namespace)
    pod = _pod_from_template(deployment, f"enc-{uuid.uuid4().hex[:6]}")
    created = cluster.core().create_namespaced_pod(namespace, pod)
    assert created.metadata.name == pod["metadata"]["name"]
    # What the API server stored still carries the restricted settings on every container.
    stored = cluster.core().read_namespaced_pod(pod["metadata"]["name"], namespace)
    for container in [*stored.spec.init_containers, *stored.spec.containers]:
        assert container.security_context.read_only_root_filesystem is True
        assert container.security_context.capabilities.drop == ["ALL"]


def test_replicaset_controller_creates_encoder_pods(cluster: Cluster, namespace: str) -> None:
    """Deployments are only warned about; the pods the controller creates are what `enforce` checks."""
    deployment = _deployment(REPO / "crds" / "samples" / "sammodel-minimal.yaml", namespace)
    cluster.apps().create_namespaced_deployment(namespace, deployment)
    selector = ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items())

    def pods_or_failure() -> Any:
        failures = [e.message for e in cluster.events(namespace) if e.reason == "FailedCreate"]
        assert not failures, failures
        return cluster.core().list_namespaced_pod(namespace, label_selector=selector).items

    pods = wait_for(pods_or_failure, timeout=60, what="encoder pods created by the ReplicaSet")
    assert len(pods) == deployment["spec"]["replicas"]


def test_negative_control_privileged_pod_is_rejected(cluster: Cluster, namespace: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "privileged"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}]},
    }
    body = _rejection(cluster, namespace, pod)
    assert "violates PodSecurity" in body and "restricted" in body


def test_negative_control_encoder_pod_without_init_container_context_is_rejected(
    cluster: Cluster, namespace: str
) -> None:
    pod = _pod_from_template(_deployment(SAMPLES[0], namespace), "broken-init")
    del pod["spec"]["initContainers"][0]["securityContext"]
    del pod["spec"]["securityContext"]["runAsNonRoot"]
    body = _rejection(cluster, namespace, pod)
    assert "violates PodSecurity" in body and "fetch-checkpoint" in body
