"""The local cluster is a real Kubernetes control plane: these fail against a mock or a half-started one."""

from __future__ import annotations

import pytest
from harness.cluster import Cluster, custom_resource_definition, wait_for
from kubernetes import client

pytestmark = pytest.mark.cluster

WIDGET_CRD = custom_resource_definition(
    "test.samoperator.io",
    "Widget",
    "widgets",
    {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "required": ["size"], "properties": {"size": {"type": "integer", "minimum": 1}}}
        },
    },
)


def gpu_deployment(name: str, gpus: int) -> dict[str, object]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 1000,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "main",
                            "image": "example.invalid/cuda-app:1",
                            "resources": {"limits": {"nvidia.com/gpu": gpus}},
                            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                        }
                    ],
                },
            },
        },
    }


def test_server_reports_the_version_it_was_built_as(cluster: Cluster) -> None:
    info = client.VersionApi(cluster.api_client).get_code()
    assert info.major == "1"
    assert info.git_version.startswith("v1.")
    assert "0.0.0" not in info.git_version


def test_custom_resource_is_created_listed_and_read_back(cluster: Cluster, namespace: str) -> None:
    cluster.apply(WIDGET_CRD)
    cluster.kubectl("wait", "--for=condition=Established", "crd/widgets.test.samoperator.io", "--timeout=30s")
    api = cluster.custom()
    body = {"apiVersion": "test.samoperator.io/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 3}}
    wait_for(
        lambda: api.create_namespaced_custom_object("test.samoperator.io", "v1", namespace, "widgets", body),
        30,
        what="widget created",
    )
    listed = api.list_namespaced_custom_object("test.samoperator.io", "v1", namespace, "widgets")["items"]
    assert [w["metadata"]["name"] for w in listed] == ["w1"]
    got = api.get_namespaced_custom_object("test.samoperator.io", "v1", namespace, "widgets", "w1")
    assert got["spec"] == {"size": 3}
    assert got["metadata"]["uid"]
    # The schema is enforced by the API server itself.
    bad = {**body, "metadata": {"name": "w2"}, "spec": {"size": 0}}
    with pytest.raises(client.ApiException) as err:
        api.create_namespaced_custom_object("test.samoperator.io", "v1", namespace, "widgets", bad)
    assert err.value.status == 422
    assert "spec.size" in err.value.body


def test_gpu_deployment_gets_a_running_pod_on_a_gpu_node(cluster: Cluster, namespace: str) -> None:
    cluster.apply(gpu_deployment("gpu-app", 1), namespace)

    def running_pod() -> client.V1Pod | None:
        pods = cluster.core().list_namespaced_pod(namespace, label_selector="app=gpu-app").items
        return next((p for p in pods if p.status.phase == "Running"), None)

    pod = wait_for(running_pod, 60, what="a Running gpu-app pod")
    node = cluster.core().read_node(pod.spec.node_name)
    assert int(node.status.allocatable["nvidia.com/gpu"]) >= 1
    ready = {c.type: c.status for c in pod.status.conditions}
    assert ready.get("Ready") == "True"


def test_pod_asking_more_gpus_than_any_node_has_stays_pending(cluster: Cluster, namespace: str) -> None:
    cluster.apply(gpu_deployment("too-big", 64), namespace)

    def failed_scheduling() -> list[client.CoreV1Event]:
        return [e for e in cluster.events(namespace) if e.reason == "FailedScheduling"]

    events = wait_for(failed_scheduling, 60, what="a FailedScheduling event")
    assert any("nvidia.com/gpu" in (e.message or "") for e in events), [e.message for e in events]
    pods = cluster.core().list_namespaced_pod(namespace, label_selector="app=too-big").items
    assert pods and all(p.status.phase == "Pending" for p in pods)


def test_deleting_an_owner_garbage_collects_its_dependents(cluster: Cluster, namespace: str) -> None:
    core = cluster.core()
    owner = core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner")))
    ref = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="dependent", owner_references=[ref]))
    )
    core.delete_namespaced_config_map("owner", namespace)

    def dependent_gone() -> bool:
        names = [c.metadata.name for c in core.list_namespaced_config_map(namespace).items]
        return "dependent" not in names

    wait_for(dependent_gone, 60, what="the garbage collector to delete the dependent")
