"""status.derive_status: conditions, counts and CVAT block from observed children, deterministically."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from sam_operator.conditions import find_condition
from sam_operator.status import Observed, derive_status

NOW = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=3)
VIT_H_SHA = "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"


def sammodel(replicas: int = 1, status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": "x", "namespace": "ns", "generation": 3, "uid": "u"},
        "spec": {
            "model": {"variant": "vit_h", "checkpoint": {"url": "https://x/sam.pth", "sha256": VIT_H_SHA}},
            "replicas": replicas,
            **spec,
        },
    }
    if status is not None:
        body["status"] = status
    return body


def deployment(
    replicas: int = 1, ready: int = 0, updated: int | None = None, available: int | None = None, generation: int = 1
) -> dict[str, Any]:
    return {
        "metadata": {"name": "sam-x", "generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": replicas if updated is None else updated,
            "readyReplicas": ready,
            "availableReplicas": ready if available is None else available,
        },
    }


def _terminated(code: int, reason: str = "Completed", message: str = "") -> dict[str, Any]:
    return {"terminated": {"exitCode": code, "reason": reason, "message": message}}


def pod(
    name: str = "sam-x-1",
    *,
    phase: str = "Running",
    node: str | None = "n1",
    ready: bool = False,
    fetch: dict[str, Any] | None = None,
    export: dict[str, Any] | None = None,
    prepare: dict[str, Any] | None = None,
    encoder: dict[str, Any] | None = None,
    scheduled: dict[str, Any] | None = None,
) -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    if scheduled is not None:
        conditions.append({"type": "PodScheduled", **scheduled})
    status: dict[str, Any] = {"phase": phase, "conditions": conditions}
    inits = []
    if fetch is not None:
        inits.append({"name": "fetch-checkpoint", **fetch})
    if export is not None:
        inits.append({"name": "export-decoder", **export})
    if prepare is not None:
        inits.append({"name": "prepare-encoder", **prepare})
    if inits:
        status["initContainerStatuses"] = inits
    if encoder is not None:
        status["containerStatuses"] = [{"name": "encoder", **encoder}]
    spec = {"nodeName": node} if node else {}
    return {"metadata": {"name": name}, "spec": spec, "status": status}


DONE = {"state": _terminated(0)}


def ready_pod(name: str = "sam-x-1") -> dict[str, Any]:
    return pod(name, ready=True, fetch=DONE, export=DONE, encoder={"started": True, "ready": True, "state": {}})


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    found = find_condition(status["conditions"], type_)
    assert found is not None
    return dict(found)


def test_ready_model_reports_counts_endpoint_selector_and_cvat() -> None:
    status = derive_status(sammodel(), Observed(deployment(1, 1), [ready_pod()], http_port=32800), NOW)
    assert status["observedGeneration"] == 3
    assert (status["replicas"], status["readyReplicas"]) == (1, 1)
    assert status["endpoint"] == "http://sam-x.ns.svc:8080"
    assert status["selector"] == (
        "app.kubernetes.io/name=sam-encoder,app.kubernetes.io/instance=x,app.kubernetes.io/component=encoder"
    )
    assert cond(status, "Ready")["status"] == "True" and cond(status, "Ready")["reason"] == "AllReplicasReady"
    assert cond(status, "Progressing")["reason"] == "RolloutComplete"
    assert cond(status, "Degraded")["status"] == "False"
    assert cond(status, "ModelCached")["status"] == "True"
    assert [c["type"] for c in status["conditions"]] == ["Ready", "Progressing", "Degraded", "ModelCached"]
    cvat = status["cvat"]
    assert cvat["functionName"] == "pth-facebookresearch-sam-vit-h" and cvat["mode"] == "embedding"
    assert cvat["httpPort"] == 32800
    assert cvat["annotations"]["type"] == "interactor"
    assert "warnings" not in cvat


def test_pending_for_gpu_is_insufficient_gpu() -> None:
    pending = pod(
        phase="Pending",
        node=None,
        scheduled={
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
        },
    )
    status = derive_status(sammodel(), Observed(deployment(1, 0), [pending]), NOW)
    ready = cond(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InsufficientGPU")
    assert "Insufficient nvidia.com/gpu" in ready["message"]
    assert cond(status, "Degraded")["reason"] == "InsufficientGPU"
    assert cond(status, "Progressing")["status"] == "True"


def test_failed_scheduling_event_alone_is_enough() -> None:
    pending = pod(phase="Pending", node=None)
    event = {
        "type": "Warning",
        "reason": "FailedScheduling",
        "involvedObject": {"kind": "Pod", "name": "sam-x-1"},
        "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
        "lastTimestamp": "2026-01-01T00:00:00Z",
    }
    status = derive_status(sammodel(), Observed(deployment(1, 0), [pending], [event]), NOW)
    assert cond(status, "Ready")["reason"] == "InsufficientGPU"


def test_stale_failed_scheduling_event_of_a_scheduled_pod_is_ignored() -> None:
    event = {
        "reason": "FailedScheduling",
        "involvedObject": {"kind": "Pod", "name": "sam-x-1"},
        "message": "Insufficient nvidia.com/gpu",
    }
    status = derive_status(sammodel(), Observed(deployment(1, 1), [ready_pod()], [event]), NOW)
    assert cond(status, "Ready")["status"] == "True"
    assert cond(status, "Degraded")["status"] == "False"


def test_other_unschedulable_reasons_are_not_gpu() -> None:
    pending = pod(phase="Pending", node=None, scheduled={"status": "False", "message": "node(s) had untolerated taint"})
    status = derive_status(sammodel(), Observed(deployment(1, 0), [pending]), NOW)
    assert cond(status, "Ready")["reason"] == "Unschedulable"


def test_crash_looping_encoder() -> None:
    crashing = pod(
        phase="Running",
        fetch=DONE,
        export=DONE,
        encoder={
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": _terminated(137, "OOMKilled"),
            "restartCount": 4,
        },
    )
    status = derive_status(sammodel(), Observed(deployment(1, 0), [crashing]), NOW)
    ready = cond(status, "Ready")
    assert ready["reason"] == "CrashLoopBackOff" and "OOMKilled" in ready["message"]
    assert cond(status, "Degraded")["reason"] == "CrashLoopBackOff"
    assert cond(status, "ModelCached")["status"] == "True"


def test_checkpoint_fetch_failure() -> None:
    failing = pod(
        phase="Pending",
        fetch={
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": _terminated(1, "Error", "sha256 mismatch: expected a7bf..., got 0000..."),
        },
        export={"state": {"waiting": {"reason": "PodInitializing"}}},
        encoder={"state": {"waiting": {"reason": "PodInitializing"}}},
    )
    status = derive_status(sammodel(), Observed(deployment(1, 0), [failing]), NOW)
    assert cond(status, "Ready")["reason"] == "CheckpointFetchFailed"
    cached = cond(status, "ModelCached")
    assert (cached["status"], cached["reason"]) == ("False", "CheckpointFetchFailed")
    assert "sha256 mismatch" in cached["message"]


def test_decoder_export_failure() -> None:
    failing = pod(phase="Pending", fetch=DONE, export={"state": _terminated(2, "Error", "bad variant")})
    status = derive_status(sammodel(), Observed(deployment(1, 0), [failing]), NOW)
    assert cond(status, "ModelCached")["reason"] == "DecoderExportFailed"


def test_preparing_the_encoder_is_progress_and_its_failure_is_named() -> None:
    preparing = pod(phase="Pending", fetch=DONE, export=DONE, prepare={"state": {"running": {}}})
    status = derive_status(sammodel(), Observed(deployment(1, 0), [preparing]), NOW)
    assert cond(status, "Ready")["reason"] == "EncoderPreparing"
    assert cond(status, "ModelCached")["status"] == "True"  # the checkpoint and decoder are there already
    assert cond(status, "Degraded")["status"] == "False"
    killed = pod(
        phase="Pending",
        fetch=DONE,
        export=DONE,
        prepare={"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": _terminated(137, "OOMKilled")},
    )
    status = derive_status(sammodel(), Observed(deployment(1, 0), [killed]), NOW)
    degraded = cond(status, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "EncoderPreparationFailed")
    assert "prepare-encoder" in degraded["message"] and "OOMKilled" in degraded["message"], degraded
    loading = pod(fetch=DONE, export=DONE, prepare=DONE, encoder={"started": False, "state": {"running": {}}})
    status = derive_status(sammodel(), Observed(deployment(1, 0), [loading]), NOW)
    assert cond(status, "Ready")["reason"] == "ModelLoading"


def test_fetching_and_loading_are_progress_not_failure() -> None:
    fetching = pod(phase="Pending", fetch={"state": {"running": {}}}, export={"state": {"waiting": {}}})
    status = derive_status(sammodel(), Observed(deployment(1, 0), [fetching]), NOW)
    assert cond(status, "Ready")["reason"] == "CheckpointFetching"
    assert cond(status, "ModelCached")["reason"] == "CheckpointFetching"
    assert cond(status, "Degraded")["status"] == "False"
    loading = pod(fetch=DONE, export=DONE, encoder={"started": False, "state": {"running": {}}})
    status = derive_status(sammodel(), Observed(deployment(1, 0), [loading]), NOW)
    assert cond(status, "Ready")["reason"] == "ModelLoading"


def test_a_pod_without_the_export_init_container_is_loading_once_its_checkpoint_is_fetched() -> None:
    sam2_pod = pod(fetch=DONE, encoder={"state": {"running": {}}, "started": False, "ready": False})
    status = derive_status(sammodel(), Observed(deployment(1, 0), [sam2_pod]), NOW)
    assert cond(status, "Ready")["reason"] == "ModelLoading"
    assert cond(status, "ModelCached")["status"] == "True"


def test_image_pull_failure() -> None:
    pulling = pod(phase="Pending", fetch={"state": {"waiting": {"reason": "ImagePullBackOff", "message": "nope"}}})
    status = derive_status(sammodel(), Observed(deployment(1, 0), [pulling]), NOW)
    assert cond(status, "Ready")["reason"] == "ImagePullFailed"


def test_a_container_that_cannot_be_created_is_a_config_error_with_its_message() -> None:
    waiting = {"state": {"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "s" not found'}}}
    status = derive_status(sammodel(), Observed(deployment(1, 0), [pod(fetch=DONE, export=DONE, encoder=waiting)]), NOW)
    assert cond(status, "Degraded")["reason"] == "ContainerConfigError"
    assert cond(status, "Degraded")["message"] == 'sam-x-1/encoder: secret "s" not found'


def test_rolling_update_is_progressing_while_old_replicas_still_serve() -> None:
    b = sammodel(replicas=2)
    dep = deployment(replicas=3, ready=2, updated=1, available=2, generation=4)
    pods = [ready_pod("sam-x-a"), ready_pod("sam-x-b"), pod("sam-x-c", fetch={"state": {"running": {}}})]
    status = derive_status(b, Observed(dep, pods), NOW)
    assert cond(status, "Ready")["status"] == "True"
    progressing = cond(status, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "RolloutInProgress")


def test_deployment_not_yet_observed_is_in_progress() -> None:
    dep = deployment(1, 1)
    dep["metadata"]["generation"] = 2
    status = derive_status(sammodel(), Observed(dep, [ready_pod()]), NOW)
    assert cond(status, "Progressing")["reason"] == "RolloutInProgress"


def test_progress_deadline_exceeded_is_degraded() -> None:
    dep = deployment(1, 0)
    dep["status"]["conditions"] = [
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "too slow"}
    ]
    status = derive_status(sammodel(), Observed(dep, [pod(fetch=DONE, export=DONE)]), NOW)
    assert cond(status, "Progressing")["reason"] == "ProgressDeadlineExceeded"
    assert cond(status, "Degraded")["status"] == "True"


def test_partial_readiness_is_ready_but_degraded_when_a_replica_cannot_schedule() -> None:
    pending = pod(
        "sam-x-2", phase="Pending", node=None, scheduled={"status": "False", "message": "Insufficient nvidia.com/gpu"}
    )
    status = derive_status(sammodel(replicas=2), Observed(deployment(2, 1), [ready_pod(), pending]), NOW)
    assert cond(status, "Ready")["reason"] == "PartiallyReady"
    assert cond(status, "Degraded")["reason"] == "InsufficientGPU"


def test_no_deployment_yet() -> None:
    status = derive_status(sammodel(), Observed(), NOW)
    assert cond(status, "Ready")["reason"] == "DeploymentPending"
    assert status["readyReplicas"] == 0


def test_scaled_to_zero() -> None:
    status = derive_status(sammodel(replicas=0), Observed(deployment(0, 0), []), NOW)
    assert cond(status, "Ready")["reason"] == "ScaledToZero"
    assert cond(status, "Progressing")["reason"] == "RolloutComplete"


def test_invalid_spec_becomes_conditions_not_an_exception() -> None:
    b = sammodel()
    b["spec"]["runtime"] = {"device": "cpu"}  # gpus defaults to 1
    status = derive_status(b, Observed(), NOW)
    ready = cond(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "spec.resources.gpus must be 0" in ready["message"]
    assert cond(status, "Degraded")["status"] == "True"
    assert status["observedGeneration"] == 3


def test_same_inputs_give_identical_output_and_transition_times_stick() -> None:
    observed = Observed(deployment(1, 1), [ready_pod()])
    first = derive_status(sammodel(), observed, NOW)
    assert derive_status(sammodel(), observed, NOW) == first
    again = derive_status(sammodel(status=first), observed, LATER)
    assert again == first


def test_transition_time_moves_only_when_status_changes() -> None:
    pending = Observed(deployment(1, 0), [pod(phase="Pending", fetch={"state": {"running": {}}})])
    first = derive_status(sammodel(), pending, NOW)
    second = derive_status(sammodel(status=first), Observed(deployment(1, 1), [ready_pod()]), LATER)
    assert cond(second, "Ready")["lastTransitionTime"] == "2026-01-01T00:03:00Z"
    assert cond(second, "Degraded")["lastTransitionTime"] == cond(first, "Degraded")["lastTransitionTime"]


def test_inputs_are_not_modified() -> None:
    b = sammodel()
    observed = Observed(deployment(1, 1), [ready_pod()])
    snapshot = (copy.deepcopy(b), copy.deepcopy(observed))
    derive_status(b, observed, NOW)
    assert (b, observed) == snapshot


def test_status_carries_the_port_reconcile_decided() -> None:
    b = sammodel(status={"cvat": {"httpPort": 32800}})
    status = derive_status(b, Observed(deployment(1, 1), [ready_pod()], http_port=32801), NOW)
    assert status["cvat"]["httpPort"] == 32801
    assert "httpPort" not in derive_status(b, Observed(deployment(1, 1), [ready_pod()]), NOW)["cvat"]


def test_cvat_disabled_has_no_port_and_masks_mode_has_a_derived_name() -> None:
    b = sammodel(cvat={"enabled": False, "mode": "masks"})
    cvat = derive_status(b, Observed(deployment(1, 1), [ready_pod()], http_port=32800), NOW)["cvat"]
    assert cvat["enabled"] is False and "httpPort" not in cvat
    assert cvat["functionName"] == "sam-ns-x"


def test_terminating_pods_are_ignored() -> None:
    dying = pod("sam-x-old", encoder={"state": {"waiting": {"reason": "CrashLoopBackOff"}}})
    dying["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status = derive_status(sammodel(), Observed(deployment(1, 1), [ready_pod(), dying]), NOW)
    assert cond(status, "Degraded")["status"] == "False"
