"""Control-plane faults under a running operator: kube-apiserver restarted, etcd briefly down, a GPU node lost.

Each test restores what it broke in ``finally`` (component started again with its former argv, nodes deleted),
because the rest of the session uses the same cluster. The operator is never restarted: its pid must be the
same afterwards, and a change made after the fault must still be reconciled.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from harness.cluster import Cluster, wait_for
from harness.faults import BlackholeProxy, Component, api_ready, kwok_gpu_node, node_ready, stopped, wait_api_ready
from harness.operator import RunningOperator, sammodel
from harness.processes import http_get
from harness.sam import condition, get_sam, wait_condition

pytestmark = pytest.mark.cluster

StartOperator = Callable[..., RunningOperator]
ETCD_OUTAGE_S = 8.0


def operator_pid(op: RunningOperator) -> int:
    assert op.proc is not None and op.proc.proc is not None
    assert op.proc.running, f"the operator exited:\n{op.proc.output()[-4000:]}"
    return op.proc.proc.pid


def change_and_wait(cluster: Cluster, namespace: str, name: str, batch: int, timeout: float = 90) -> float:
    """Change a runtime field; return the seconds until the operator has reconciled it: the Deployment's
    template carries it and ``status.observedGeneration`` caught up. (Deliberately not waiting for new pods to
    become Ready: after a control-plane outage kwok may leave a node's pods NotReady, which is no operator fault.)"""
    started = time.monotonic()
    cluster.kubectl(
        "patch",
        "sam",
        name,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"runtime": {"maxBatchSize": batch}}}),
    )

    def reconciled() -> bool:
        sam = get_sam(cluster, namespace, name)
        deployment = cluster.get_json(f"deployment/sam-{name}", "-n", namespace)
        env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        return sam["status"].get("observedGeneration") == sam["metadata"]["generation"] and env.get(
            "SAM_INFERENCE_MAX_BATCH_SIZE"
        ) == str(batch)

    try:
        wait_for(reconciled, timeout, interval=0.25, what=f"{name} reconciled to maxBatchSize {batch}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{describe(cluster, namespace, name)}") from None
    return time.monotonic() - started


def describe(cluster: Cluster, namespace: str, name: str) -> str:
    """The SamModel's status, its Deployment's numbers and its pods, for a failure message."""
    sam = get_sam(cluster, namespace, name)
    deployment = cluster.get_json(f"deployment/sam-{name}", "-n", namespace)
    pods = [
        (
            p["metadata"]["name"],
            p["status"].get("phase"),
            [c["status"] for c in p["status"].get("conditions", []) if c["type"] == "Ready"],
        )
        for p in cluster.get_json("pods", "-n", namespace)["items"]
    ]
    return (
        f"generation {sam['metadata']['generation']} status {json.dumps(sam['status'])}\n"
        f"deployment generation {deployment['metadata']['generation']} spec.replicas "
        f"{deployment['spec']['replicas']} status {json.dumps(deployment.get('status'))}\npods {pods}"
    )


@pytest.mark.slow
def test_apiserver_restart_watches_recover_without_restarting_the_operator(
    cluster: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    # No periodic resync during the test: only the watches can bring the change made after the restart.
    op = start_operator(namespace, resync_s=3600)
    cluster.apply(sammodel("watched"), namespace)
    wait_condition(cluster, namespace, "watched", "Ready", "True", timeout=90)
    pid = operator_pid(op)

    apiserver = Component(cluster, "kube-apiserver")
    old_pid = apiserver.pid
    with stopped(cluster, "kube-apiserver"):
        assert not api_ready(cluster)
        t_down = time.monotonic()
    assert apiserver.pid != old_pid and apiserver.running
    outage_s = time.monotonic() - t_down

    recovered_s = change_and_wait(cluster, namespace, "watched", 7)
    recovered_again_s = change_and_wait(cluster, namespace, "watched", 9)
    assert operator_pid(op) == pid, "the operator was restarted"
    assert op.metric("sam_operator_reconcile_total", result="success") > 0
    print(
        f"\n[faults] kube-apiserver restarted (API unavailable {outage_s:.1f}s); operator pid {pid} kept; "
        f"change after the restart reconciled in {recovered_s:.1f}s (a second one in {recovered_again_s:.1f}s)"
    )


@pytest.mark.slow
def test_etcd_briefly_down_does_not_crash_loop_the_operator(
    cluster: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    op = start_operator(namespace, resync_s=1)  # the resync keeps calling the API throughout the outage
    cluster.apply(sammodel("steady"), namespace)
    wait_condition(cluster, namespace, "steady", "Ready", "True", timeout=90)
    pid = operator_pid(op)

    with stopped(cluster, "etcd") as etcd:
        t_down = time.monotonic()
        wait_for(lambda: not api_ready(cluster), 30, what="the API to notice etcd is down")
        # The outage itself: a fixed, brief time without etcd (nothing to poll for; the operator must just
        # not die in it). Its API calls hang or fail meanwhile.
        time.sleep(max(0.0, ETCD_OUTAGE_S - (time.monotonic() - t_down)))
        assert not etcd.running
        assert operator_pid(op) == pid
        down_s = time.monotonic() - t_down
    api_back_s = time.monotonic() - t_down

    recovered_s = change_and_wait(cluster, namespace, "steady", 7, timeout=120)
    assert operator_pid(op) == pid, "the operator was restarted"
    assert op.proc is not None
    health = f"http://127.0.0.1:{op.proc.env['SAM_OPERATOR_HEALTH_PORT']}/healthz"
    wait_for(lambda: http_get(health)[0] == 200, 30, what="the operator's liveness endpoint")
    print(
        f"\n[faults] etcd down {down_s:.1f}s (API ready again {api_back_s:.1f}s after the stop); operator pid "
        f"{pid} kept, liveness OK; change after etcd returned reconciled in {recovered_s:.1f}s"
    )


def pods_of(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    items = cluster.get_json("pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={name}")["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


@pytest.mark.slow
def test_losing_a_gpu_node_reports_the_loss_and_the_recovery(
    cluster: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    # Two fake GPU nodes of our own (1 GPU each), selected by a label only they carry: the session's other
    # nodes are never touched, and one encoder pod fits per node.
    pool = {"samoperator.io/fault-pool": namespace}
    nodes = [f"{namespace}-gpu-a", f"{namespace}-gpu-b"]
    start_operator(namespace)
    try:
        for node in nodes:
            cluster.apply(kwok_gpu_node(node, gpus=1, labels=pool))
        wait_for(lambda: all(node_ready(cluster, n) for n in nodes), 60, what="our GPU nodes Ready")
        cluster.apply(
            sammodel("gpu", replicas=2, runtime={"device": "cuda"}, resources={"gpus": 1}, nodeSelector=pool), namespace
        )
        wait_condition(cluster, namespace, "gpu", "Ready", "True", reason="AllReplicasReady", timeout=90)
        placed = {p["spec"]["nodeName"]: p["metadata"]["name"] for p in pods_of(cluster, namespace, "gpu")}
        assert sorted(placed) == sorted(nodes), placed

        victim = nodes[0]
        lost_pod = placed[victim]
        t0 = time.monotonic()
        cluster.kubectl("delete", "node", victim)
        # The pod GC controller removes the pods of a node that is gone (after its quarantine); the Deployment
        # makes a replacement, which has nowhere to go: the status says so.
        sam = wait_condition(cluster, namespace, "gpu", "Degraded", "True", reason="InsufficientGPU", timeout=150)
        loss_s = time.monotonic() - t0
        ready = condition(sam, "Ready")
        assert (ready["status"], ready["reason"]) == ("True", "PartiallyReady"), ready
        assert sam["status"]["readyReplicas"] == 1
        assert "nvidia.com/gpu" in condition(sam, "Degraded")["message"]
        pods = pods_of(cluster, namespace, "gpu")
        assert lost_pod not in {p["metadata"]["name"] for p in pods}
        pending = [p for p in pods if p["status"].get("phase") == "Pending"]
        assert len(pending) == 1 and not pending[0]["spec"].get("nodeName"), pods

        t1 = time.monotonic()
        cluster.apply(kwok_gpu_node(victim, gpus=1, labels=pool))  # the node comes back
        sam = wait_condition(cluster, namespace, "gpu", "Ready", "True", reason="AllReplicasReady", timeout=120)
        recover_s = time.monotonic() - t1
        assert sam["status"]["readyReplicas"] == 2
        wait_condition(cluster, namespace, "gpu", "Degraded", "False", timeout=30)
        rescheduled = {p["metadata"]["name"]: p["spec"].get("nodeName") for p in pods_of(cluster, namespace, "gpu")}
        assert rescheduled.get(pending[0]["metadata"]["name"]) == victim, rescheduled
        print(
            f"\n[faults] GPU node {victim} deleted: loss reported (Ready PartiallyReady 1/2, Degraded "
            f"InsufficientGPU) after {loss_s:.1f}s (pod GC); node added back: 2/2 ready after {recover_s:.1f}s"
        )
    finally:
        for node in nodes:
            cluster.kubectl("delete", "node", node, "--ignore-not-found", "--wait=false", check=False)


def test_fault_helpers_restore_a_stopped_component(cluster: Cluster) -> None:
    """``stopped`` starts the component again with its former argv and records the new pid for cluster-down."""
    scheduler = Component(cluster, "kube-scheduler")
    before = scheduler.snapshot.argv
    old_pid = scheduler.pid
    with pytest.raises(RuntimeError, match="boom"), stopped(cluster, "kube-scheduler"):
        assert not scheduler.running
        raise RuntimeError("boom")
    assert scheduler.running and scheduler.pid != old_pid
    assert Component(cluster, "kube-scheduler").snapshot.argv == before
    wait_api_ready(cluster)


@pytest.mark.slow
def test_connections_that_go_silent_do_not_freeze_the_operator(
    cluster: Cluster, namespace: str, start_operator: StartOperator, tmp_path: Path
) -> None:
    """A half-open connection (the API server's end vanished without a FIN/RST) must not hang the operator.

    Every connection the operator has open is black-holed at once; the operator must give up on them (client-side
    timeouts) and dial again, so that a change made afterwards is still reconciled, by the same process.
    """
    server = urlsplit(yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]["server"])
    proxy = BlackholeProxy(server.hostname or "127.0.0.1", server.port or 443)
    try:
        kubeconfig = proxy.kubeconfig(cluster.kubeconfig, tmp_path / "via-proxy.kubeconfig")
        op = start_operator(namespace, resync_s=1, KUBECONFIG=str(kubeconfig))
        cluster.apply(sammodel("silent"), namespace)
        wait_condition(cluster, namespace, "silent", "Ready", "True", timeout=90)
        pid = operator_pid(op)
        wait_for(
            lambda: op.metric("sam_operator_reconcile_total", result="success") >= 3,
            30,
            what="resyncs on pooled connections",
        )
        dropped = proxy.blackhole()
        assert dropped > 0
        recovered_s = change_and_wait(cluster, namespace, "silent", 5, timeout=150)
        assert operator_pid(op) == pid
        print(
            f"\n[faults] {dropped} operator connections black-holed; operator pid {pid} kept; change reconciled "
            f"{recovered_s:.1f}s later"
        )
    finally:
        proxy.close()
