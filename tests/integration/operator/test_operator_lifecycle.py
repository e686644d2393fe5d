"""The operator against the real API server: create, status, rollout, scale, GPU shortage, delete, restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from harness.cluster import Cluster, wait_for
from harness.operator import RunningOperator, sammodel
from harness.sam import condition, get_sam, wait_condition

pytestmark = pytest.mark.cluster


def children(cluster: Cluster, namespace: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for kind in (
        "deployments",
        "services",
        "poddisruptionbudgets",
        "horizontalpodautoscalers",
        "persistentvolumeclaims",
    ):
        items = cluster.get_json(kind, "-n", namespace)["items"]
        out[kind] = sorted(i["metadata"]["name"] for i in items)
    return out


def test_create_gives_children_running_pods_and_ready_status(
    cluster: Cluster, namespace: str, operator: RunningOperator
) -> None:
    cluster.apply(sammodel("demo", replicas=2), namespace)
    # Ready is True from the first ready replica (PartiallyReady): wait for both.
    sam = wait_condition(cluster, namespace, "demo", "Ready", "True", reason="AllReplicasReady", timeout=90)
    kids = children(cluster, namespace)
    assert kids["deployments"] == ["sam-demo"]
    assert kids["services"] == ["sam-demo"]
    assert kids["poddisruptionbudgets"] == ["sam-demo"]  # replicas > 1
    deployment = cluster.get_json("deployment/sam-demo", "-n", namespace)
    owner = deployment["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("SamModel", "demo", sam["metadata"]["uid"])
    assert owner.get("controller") is True
    status = sam["status"]
    assert status["observedGeneration"] == sam["metadata"]["generation"]
    assert status["readyReplicas"] == 2
    assert status["cvat"]["functionName"]
    assert status["endpoint"].startswith("http://sam-demo.")
    # The printer columns: kubectl get sam shows the model, replica counts, readiness and the CVAT function.
    table = cluster.kubectl("get", "sam", "demo", "-n", namespace).stdout.splitlines()
    header = table[0].split()
    for column in ("NAME", "MODEL", "READY", "FUNCTION", "AGE"):
        assert column in header, header
    assert "vit_tiny" in table[1] and status["cvat"]["functionName"] in table[1]


def test_kubectl_explain_describes_the_fields(cluster: Cluster, sammodel_crd: None) -> None:
    text = cluster.kubectl("explain", "sammodel.spec.model").stdout
    assert "variant" in text and "checkpoint" in text
    assert "DESCRIPTION" in text
    text = cluster.kubectl("explain", "sammodel.spec.runtime.precision").stdout
    assert "float16" in text or "bfloat16" in text


def test_spec_change_rolls_out_and_observed_generation_follows(
    cluster: Cluster, namespace: str, operator: RunningOperator
) -> None:
    cluster.apply(sammodel("roll"), namespace)
    wait_condition(cluster, namespace, "roll", "Ready", "True", timeout=90)
    cluster.kubectl(
        "patch", "sam", "roll", "-n", namespace, "--type=merge", "-p", '{"spec":{"runtime":{"maxBatchSize":8}}}'
    )
    sam = wait_for(
        lambda: (
            (s := get_sam(cluster, namespace, "roll"))["status"].get("observedGeneration")
            == s["metadata"]["generation"]
            and s
        ),
        60,
        what="observedGeneration to follow",
    )
    assert sam["metadata"]["generation"] >= 2
    env = cluster.get_json("deployment/sam-roll", "-n", namespace)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "SAM_INFERENCE_MAX_BATCH_SIZE", "value": "8"} in env
    wait_condition(cluster, namespace, "roll", "Ready", "True", timeout=90)


def test_kubectl_scale_uses_the_scale_subresource(cluster: Cluster, namespace: str, operator: RunningOperator) -> None:
    cluster.apply(sammodel("scaled"), namespace)
    wait_condition(cluster, namespace, "scaled", "Ready", "True", timeout=90)
    cluster.kubectl("scale", "sam/scaled", "-n", namespace, "--replicas=3")
    wait_for(
        lambda: get_sam(cluster, namespace, "scaled")["status"].get("readyReplicas") == 3, 90, what="3 ready replicas"
    )
    deployment = cluster.get_json("deployment/sam-scaled", "-n", namespace)
    assert deployment["spec"]["replicas"] == 3
    scale = cluster.get_json("sam/scaled", "-n", namespace, "--subresource=scale")
    assert scale["status"]["replicas"] == 3
    assert "app.kubernetes.io/instance=scaled" in scale["status"]["selector"]


def test_too_many_gpus_reports_insufficient_gpu_and_recovers_when_a_node_is_added(
    cluster: Cluster, namespace: str, operator: RunningOperator
) -> None:
    body = sammodel("hungry", runtime={"device": "cuda"}, resources={"gpus": 8})
    cluster.apply(body, namespace)
    sam = wait_condition(cluster, namespace, "hungry", "Ready", "False", reason="InsufficientGPU", timeout=90)
    ready = condition(sam, "Ready")
    assert "nvidia.com/gpu" in ready["message"]
    node = big_gpu_node(f"gpu-big-{namespace}")
    cluster.apply(node)
    try:
        wait_condition(cluster, namespace, "hungry", "Ready", "True", timeout=120)
    finally:
        cluster.kubectl("delete", "node", node["metadata"]["name"], "--wait=false")


def test_delete_garbage_collects_every_child(cluster: Cluster, namespace: str, operator: RunningOperator) -> None:
    cluster.apply(sammodel("gone", replicas=2), namespace)
    wait_condition(cluster, namespace, "gone", "Ready", "True", timeout=90)
    cluster.kubectl("delete", "sam", "gone", "-n", namespace, "--wait=true", "--timeout=60s")

    def all_gone() -> bool:
        kids = children(cluster, namespace)
        pods = cluster.get_json("pods", "-n", namespace)["items"]
        return not any(kids.values()) and not pods

    wait_for(all_gone, 90, what="children and pods to be garbage-collected")


def test_operator_restart_makes_no_duplicates_and_no_spurious_writes(
    cluster: Cluster, namespace: str, operator: RunningOperator, tmp_path: Path
) -> None:
    # Writes are counted per process, so this test runs its own operator watching only its namespace: other
    # tests' SamModels (namespaces still being deleted) must not show up in the count.
    operator.stop()
    own = RunningOperator(cluster, tmp_path, extra_env={"SAM_OPERATOR_NAMESPACES": f'["{namespace}"]'})
    try:
        own.start()
        cluster.apply(sammodel("steady", replicas=2), namespace)
        wait_condition(cluster, namespace, "steady", "Ready", "True", timeout=90)
        own.kill()  # mid-flight: no graceful shutdown
        cluster.kubectl("patch", "sam", "steady", "-n", namespace, "--type=merge", "-p", '{"spec":{"replicas":3}}')
        own.start()
        wait_for(
            lambda: get_sam(cluster, namespace, "steady")["status"].get("readyReplicas") == 3,
            90,
            what="the restarted operator to converge",
        )
        kids = children(cluster, namespace)
        assert kids["deployments"] == ["sam-steady"] and kids["services"] == ["sam-steady"]
        assert len(cluster.get_json("replicasets", "-n", namespace)["items"]) == 1
        # Converged: a few resync rounds and events later, the operator has written nothing more.
        wait_for(lambda: own.metric("sam_operator_reconcile_total", result="success") > 0, 30)
        wait_for(
            lambda: (
                get_sam(cluster, namespace, "steady")["status"].get("observedGeneration")
                == get_sam(cluster, namespace, "steady")["metadata"]["generation"]
            ),
            30,
        )
        settled = own.writes()
        before = own.metric("sam_operator_reconcile_total", result="success")
        wait_for(
            lambda: own.metric("sam_operator_reconcile_total", result="success") >= before + 3,
            60,
            what="three more reconciles (resync every 10 s)",
        )
        assert own.writes() == settled, "a no-op reconcile wrote to the API server"
        # A fresh operator on a converged cluster writes nothing at all.
        own.stop()
        own.start()
        wait_for(
            lambda: own.metric("sam_operator_reconcile_total", result="success") >= 2,
            60,
            what="the fresh operator to reconcile",
        )
        assert own.writes() == 0
    finally:
        own.stop()
        operator.start()


def big_gpu_node(name: str) -> dict[str, Any]:
    alloc = {"cpu": "64", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": "8"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake"},
            "labels": {"kubernetes.io/hostname": name, "type": "kwok", "nvidia.com/gpu.present": "true"},
        },
        "status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "capacity": alloc,
            "allocatable": alloc,
        },
    }
