"""Faults only real containers have: a process killed inside its container, an init container that exits non-zero,
the kernel's OOM killer, a pod deleted mid-request. Each shows as a named condition on the SamModel, and no CVAT
request is lost where a second replica exists.
"""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Any

import pytest
from harness.cluster import wait_for
from harness.cvat import CvatClient, interactor_payload, synthetic_image
from harness.kind import container_status, is_ready, logs, node_exec, pods, ready_pods
from harness.kind_release import Checkpoint, Kind, Model, tiny_sammodel
from harness.sam import condition, get_sam, wait_condition

pytestmark = [pytest.mark.kind]


class Stream:
    """CVAT-shaped requests with distinct frames, one after another, in a thread; records each status code."""

    def __init__(self, gateway_port: int, function: str, count: int) -> None:
        self.codes: list[int] = []
        self.replicas: list[str] = []
        self._thread = threading.Thread(target=self._run, args=(gateway_port, function, count), daemon=True)

    def _run(self, port: int, function: str, count: int) -> None:
        client = CvatClient(port)
        for seed in range(100, 100 + count):
            png, _ = synthetic_image(seed=seed)
            code, headers, _ = client.invoke_dashboard(function, interactor_payload(png, [[3.0, 3.0]]))
            self.codes.append(code)
            self.replicas.append(headers.get("X-Sam-Gateway-Replica", ""))
            time.sleep(0.2)

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(600)


def watch_ready_reasons(kind: Kind, model: Model, seconds: float) -> list[str]:
    """The SamModel's Ready reasons seen while polling for ``seconds``, in order, without repeats."""
    seen: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        reason = condition(get_sam(kind.cluster, model.namespace, model.name), "Ready").get("reason", "")
        if not seen or seen[-1] != reason:
            seen.append(reason)
        time.sleep(0.3)
    return seen


def killed_container_exit_code(kind: Kind, container_id: str) -> str:
    """The exit code containerd recorded for a container that has exited (crictl inspect on the node)."""
    template = "{{.status.exitCode}}"
    return node_exec(kind.name, "crictl", "inspect", "-o", "go-template", "--template", template, container_id).stdout


def test_a_killed_encoder_process_is_restarted_by_the_kubelet_and_routed_around(
    kind: Kind, gateway_port: int, embedding_model: Model
) -> None:
    ns = embedding_model.namespace
    victim = ready_pods(kind.cluster, ns, embedding_model.selector, 2)[0]
    name = victim["metadata"]["name"]
    container_id = container_status(victim, "encoder")["containerID"].removeprefix("containerd://")
    restarts = container_status(victim, "encoder")["restartCount"]
    pid = node_exec(
        kind.name, "crictl", "inspect", "-o", "go-template", "--template", "{{.info.pid}}", container_id
    ).stdout.strip()
    with Stream(gateway_port, embedding_model.function, 20) as stream:
        wait_for(lambda: len(stream.codes) >= 3, 120, what="the stream to get going")
        node_exec(kind.name, "kill", "-9", pid)  # the encoder process, from outside its container
        reasons = watch_ready_reasons(kind, embedding_model, 20)
    assert stream.codes == [200] * 20, stream.codes

    def restarted() -> dict[str, Any] | None:
        (pod,) = [p for p in pods(kind.cluster, ns, embedding_model.selector) if p["metadata"]["name"] == name]
        encoder = container_status(pod, "encoder")
        return encoder if encoder["restartCount"] == restarts + 1 and is_ready(pod) else None

    encoder = wait_for(restarted, 180, what=f"{name} restarted and Ready again")
    # The kubelet's lastState can be empty for a moment after the restart; the runtime keeps the killed container.
    exit_code = (encoder["lastState"].get("terminated") or {}).get("exitCode")
    if exit_code is None:
        exit_code = int(killed_container_exit_code(kind, container_id))
    assert exit_code == 137, encoder  # SIGKILL
    assert "PartiallyReady" in reasons, reasons  # one replica ready while the kubelet restarted the other
    wait_condition(kind.cluster, ns, embedding_model.name, "Ready", "True", reason="AllReplicasReady", timeout=120)


def test_a_wrong_sha256_fails_the_fetch_init_container_and_says_so(
    kind: Kind, models_namespace: str, checkpoint: Checkpoint
) -> None:
    wrong = "0" * 64
    kind.cluster.apply(tiny_sammodel("bad-sha", checkpoint, "masks", 1, sha256=wrong), models_namespace)
    sam = wait_condition(
        kind.cluster, models_namespace, "bad-sha", "Degraded", "True", reason="CheckpointFetchFailed", timeout=300
    )
    message = condition(sam, "Degraded")["message"]
    assert "fetch-checkpoint" in message and "sha256" in message.lower(), message
    (pod,) = pods(kind.cluster, models_namespace, "app.kubernetes.io/instance=bad-sha")
    fetch = container_status(pod, "fetch-checkpoint", init=True)
    terminated = fetch["state"].get("terminated") or fetch["lastState"].get("terminated")
    assert terminated and terminated["exitCode"] != 0, fetch
    pod_name = pod["metadata"]["name"]
    try:
        fetch_log = logs(kind.cluster, models_namespace, pod_name, "fetch-checkpoint")
    except subprocess.CalledProcessError:  # waiting in back-off: the last run's log
        fetch_log = logs(kind.cluster, models_namespace, pod_name, "fetch-checkpoint", previous=True)
    assert wrong in fetch_log, fetch_log
    assert condition(sam, "Ready")["status"] == "False"
    kind.cluster.kubectl("delete", "sammodel", "bad-sha", "-n", models_namespace, "--wait=false")


def test_a_memory_limit_too_small_is_oomkilled_and_shown_in_the_status(
    kind: Kind, models_namespace: str, checkpoint: Checkpoint
) -> None:
    kind.cluster.apply(
        tiny_sammodel("too-small", checkpoint, "masks", 1, memory_limit="160Mi", memory_request="160Mi"),
        models_namespace,
    )

    def oom_killed() -> dict[str, Any] | None:
        for pod in pods(kind.cluster, models_namespace, "app.kubernetes.io/instance=too-small"):
            for key in ("initContainerStatuses", "containerStatuses"):
                for status in pod["status"].get(key) or []:
                    for state in (status.get("state") or {}, status.get("lastState") or {}):
                        if (state.get("terminated") or {}).get("reason") == "OOMKilled":
                            return dict(status)
        return None

    killed = wait_for(oom_killed, 300, what="the kernel's OOM killer to stop a container of too-small")
    sam = wait_for(
        lambda: (
            (s := get_sam(kind.cluster, models_namespace, "too-small"))
            and "OOMKilled" in condition(s, "Degraded").get("message", "")
            and s
        ),
        300,
        what="OOMKilled in the Degraded condition",
    )
    degraded = condition(sam, "Degraded")
    assert degraded["status"] == "True", degraded
    assert degraded["reason"] in ("CrashLoopBackOff", "DecoderExportFailed", "CheckpointFetchFailed"), degraded
    assert killed["name"] in degraded["message"], (killed["name"], degraded)
    kind.cluster.kubectl("delete", "sammodel", "too-small", "-n", models_namespace, "--wait=false")


def test_a_pod_deleted_mid_request_loses_no_request(kind: Kind, gateway_port: int, embedding_model: Model) -> None:
    ns = embedding_model.namespace
    victim = ready_pods(kind.cluster, ns, embedding_model.selector, 2, timeout=300)[0]["metadata"]["name"]
    with Stream(gateway_port, embedding_model.function, 20) as stream:
        wait_for(lambda: len(stream.codes) >= 3, 120, what="the stream to get going")
        kind.cluster.kubectl("delete", "pod", victim, "-n", ns, "--wait=false")
    assert stream.codes == [200] * 20, stream.codes
    replacement = ready_pods(kind.cluster, ns, embedding_model.selector, 2, timeout=300)
    assert victim not in {p["metadata"]["name"] for p in replacement}
