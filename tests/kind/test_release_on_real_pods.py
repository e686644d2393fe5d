"""The chart on kind: the operator and the gateway as real pods under Pod Security `restricted`, `helm test` as a
real Job pod, `helm upgrade` rolling the operator pod, and GPU SamModels scheduled onto the kwok GPU nodes that
sit beside the real node.
"""

from __future__ import annotations

import uuid

import pytest
from harness.cluster import wait_for
from harness.kind import container_status, exec_in, logs, pods, ready_pods
from harness.kind_release import RELEASE, Checkpoint, Kind, Model, Release, helm, tiny_sammodel, upgrade_release
from harness.sam import condition, wait_condition

pytestmark = [pytest.mark.kind]


def test_operator_and_gateway_run_as_restricted_pods(kind: Kind, release: Release) -> None:
    labels = kind.cluster.get_json("namespace", release.namespace)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for selector, container, port_name in (
        (release.operator_selector, "operator", "health"),
        (release.gateway_selector, "gateway", "http"),
    ):
        (pod,) = ready_pods(kind.cluster, release.namespace, selector, 1)
        name = pod["metadata"]["name"]
        status = container_status(pod, container)
        assert "running" in status["state"] and status["ready"], status
        assert status["restartCount"] == 0, logs(kind.cluster, release.namespace, name, container, previous=True)
        assert pod["spec"]["nodeName"] == kind.node
        assert exec_in(kind.cluster, release.namespace, name, container, "id", "-u").stdout.strip() == "65532"
        refused = exec_in(kind.cluster, release.namespace, name, container, "touch", "/x", check=False)
        assert "Read-only file system" in refused.stderr, refused
        assert any(p["name"] == port_name for p in pod["spec"]["containers"][0]["ports"])
    (operator,) = pods(kind.cluster, release.namespace, release.operator_selector)
    # kopf's identity comes from the pod name (POD_ID), not a passwd lookup.
    env = {e["name"]: e for e in operator["spec"]["containers"][0]["env"]}
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_helm_test_runs_as_a_real_job_pod(kind: Kind, release: Release, embedding_model: Model) -> None:
    helm(kind.cluster, "test", RELEASE, "-n", release.namespace, "--timeout", "5m")
    job_pods = pods(kind.cluster, release.namespace, "app.kubernetes.io/component=test")
    assert job_pods, "helm test left no pod to inspect"
    pod = job_pods[-1]
    terminated = container_status(pod, "api-functions")["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("Completed", 0), terminated
    out = logs(kind.cluster, release.namespace, pod["metadata"]["name"], "api-functions")
    assert "gateway lists" in out and "function(s)" in out, out
    assert int(out.split("gateway lists", 1)[1].split()[0]) >= 1


def test_gpu_sammodels_schedule_onto_the_kwok_gpu_nodes_and_cpu_ones_on_the_real_node(
    kind: Kind, models_namespace: str, checkpoint: Checkpoint, embedding_model: Model
) -> None:
    gpu = tiny_sammodel("tiny-gpu", checkpoint, "masks", 1)
    gpu["spec"]["runtime"]["device"] = "cuda"
    gpu["spec"]["resources"]["gpus"] = 1
    gpu["spec"]["nodeSelector"] = {"nvidia.com/gpu.present": "true"}
    gpu["spec"]["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    too_big = tiny_sammodel("tiny-8gpu", checkpoint, "masks", 1)
    too_big["spec"]["runtime"]["device"] = "cuda"
    too_big["spec"]["resources"]["gpus"] = 8
    too_big["spec"]["tolerations"] = gpu["spec"]["tolerations"]
    kind.cluster.apply([gpu, too_big], models_namespace)
    try:

        def scheduled() -> str | None:
            found = pods(kind.cluster, models_namespace, "app.kubernetes.io/instance=tiny-gpu")
            return found[0]["spec"].get("nodeName") if found else None

        node = wait_for(scheduled, 120, what="the GPU encoder pod to be scheduled")
        assert node.startswith("kwok-gpu-node-"), node
        sam = wait_condition(
            kind.cluster, models_namespace, "tiny-8gpu", "Ready", "False", reason="InsufficientGPU", timeout=120
        )
        assert "nvidia.com/gpu" in condition(sam, "Ready")["message"]
        for pod in pods(kind.cluster, models_namespace, embedding_model.selector):
            assert pod["spec"]["nodeName"] == kind.node
    finally:
        kind.cluster.kubectl("delete", "sammodel", "tiny-gpu", "tiny-8gpu", "-n", models_namespace, "--wait=false")


def test_helm_upgrade_rolls_the_operator_pod_and_models_stay_ready(
    kind: Kind, release: Release, embedding_model: Model
) -> None:
    (before,) = ready_pods(kind.cluster, release.namespace, release.operator_selector, 1)
    upgrade_release(
        kind.cluster,
        release.namespace,
        "--set",
        f"operator.podAnnotations.samoperator\\.io/rollout={uuid.uuid4().hex[:8]}",
    )
    (after,) = ready_pods(kind.cluster, release.namespace, release.operator_selector, 1, timeout=300)
    assert after["metadata"]["uid"] != before["metadata"]["uid"]
    assert container_status(after, "operator")["restartCount"] == 0
    revision = after["metadata"]["annotations"]["samoperator.io/rollout"]
    assert revision
    # The new operator pod takes over: the model it did not create stays Ready, with its status kept current.
    sam = wait_condition(kind.cluster, embedding_model.namespace, embedding_model.name, "Ready", "True", timeout=120)
    assert sam["status"]["readyReplicas"] == 2
