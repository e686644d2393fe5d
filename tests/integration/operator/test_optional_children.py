"""Optional children follow the spec both ways (rendered, then pruned), and ServiceMonitors follow the API."""

from __future__ import annotations

import pytest
from harness.cluster import Cluster, custom_resource_definition, wait_for
from harness.operator import RunningOperator, sammodel
from harness.sam import condition, wait_condition

pytestmark = pytest.mark.cluster

# The smallest ServiceMonitor CRD that makes the monitoring.coreos.com/v1 API exist (as prometheus-operator would).
SERVICE_MONITOR_CRD = custom_resource_definition(
    "monitoring.coreos.com",
    "ServiceMonitor",
    "servicemonitors",
    {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
)


def names(cluster: Cluster, kind: str, namespace: str) -> list[str]:
    return sorted(i["metadata"]["name"] for i in cluster.get_json(kind, "-n", namespace)["items"])


def test_autoscaling_and_shared_cache_children_come_and_go_with_the_spec(
    cluster: Cluster, namespace: str, operator: RunningOperator
) -> None:
    cluster.apply(sammodel("opt"), namespace)
    wait_condition(cluster, namespace, "opt", "Ready", "True", timeout=90)
    assert names(cluster, "hpa", namespace) == [] and names(cluster, "pvc", namespace) == []
    patch = (
        '{"spec":{"autoscaling":{"enabled":true,"minReplicas":2,"maxReplicas":4,"targetQueueDepth":3},'
        '"cache":{"sharedVolume":{"enabled":true,"size":"5Gi"}}}}'
    )
    cluster.kubectl("patch", "sam", "opt", "-n", namespace, "--type=merge", "-p", patch)
    wait_for(lambda: names(cluster, "hpa", namespace) == ["sam-opt"], 60, what="the HPA")
    wait_for(lambda: names(cluster, "pvc", namespace) == ["sam-opt-model-cache"], 60, what="the shared PVC")
    hpa = cluster.get_json("hpa/sam-opt", "-n", namespace)
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 4)
    # No provisioner in this cluster: the claim stays Pending, new pods can't schedule, and the status says so.
    sam = wait_condition(cluster, namespace, "opt", "Degraded", "True", reason="Unschedulable", timeout=60)
    assert "PersistentVolumeClaim" in condition(sam, "Degraded")["message"]
    cluster.kubectl(
        "patch",
        "sam",
        "opt",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"autoscaling":{"enabled":false},"cache":{"sharedVolume":{"enabled":false}}}}',
    )
    wait_for(lambda: names(cluster, "hpa", namespace) == [], 60, what="the HPA to be pruned")
    wait_for(
        lambda: (
            not [
                p
                for p in cluster.get_json("pvc", "-n", namespace)["items"]
                if not p["metadata"].get("deletionTimestamp")
            ]
        ),
        60,
        what="the PVC to be pruned",
    )


def test_service_monitor_is_rendered_only_once_its_api_exists(
    cluster: Cluster, namespace: str, operator: RunningOperator
) -> None:
    cluster.apply(sammodel("watched"), namespace)
    wait_condition(cluster, namespace, "watched", "Ready", "True", timeout=90)
    cluster.apply(SERVICE_MONITOR_CRD)
    cluster.kubectl("wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com", "--timeout=30s")
    try:
        # Nothing about the SamModel changed: the periodic resync notices the new API.
        wait_for(lambda: names(cluster, "servicemonitors", namespace) == ["sam-watched"], 60, what="the ServiceMonitor")
        sm = cluster.get_json("servicemonitor/sam-watched", "-n", namespace)
        assert sm["metadata"]["ownerReferences"][0]["name"] == "watched"
        assert sm["spec"]["endpoints"][0]["port"] == "http"
    finally:
        cluster.kubectl("delete", "crd", "servicemonitors.monitoring.coreos.com", "--wait=false")
