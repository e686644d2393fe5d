"""What one encoder pod is doing, from its status and the Events about it. Pure.

``diagnose_pod`` names a failure (one of ``conditions.FAILURE_REASONS``: unschedulable, image pull, config error,
checkpoint fetch, decoder export or encoder preparation failed, crash loop) or the stage the pod is in (pending,
fetching, exporting, preparing, loading). :mod:`sam_operator.status_conditions` turns the diagnoses of all pods
into the SamModel's conditions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sam_operator import conditions as c

__all__ = ["PodDiagnosis", "diagnose_pod"]

_FETCH = "fetch-checkpoint"
_EXPORT = "export-decoder"
_PREPARE = "prepare-encoder"  # only in CPU pods whose OpenVINO encoder is prepared on the shared PVC
_ENCODER = "encoder"
#: A container waiting for one of these reasons will not start by itself: the pod's failure reason.
_IMAGE_PULL = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
_CONFIG = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")
_WAITING_FAILURES = {
    **dict.fromkeys(_IMAGE_PULL, c.REASON_IMAGE_PULL_FAILED),
    **dict.fromkeys(_CONFIG, c.REASON_CONTAINER_CONFIG_ERROR),
}


@dataclass(frozen=True)
class PodDiagnosis:
    """What one encoder pod is doing: a failure reason (``conditions.FAILURE_REASONS``) or a progress reason."""

    pod: str
    ready: bool
    cached: bool  # both init containers completed
    reason: str | None  # failure reason, or None
    progress: str | None  # CheckpointFetching / DecoderExporting / EncoderPreparing / ModelLoading / PodsPending
    message: str


def _statuses(pod: Mapping[str, Any], key: str) -> dict[str, Mapping[str, Any]]:
    return {str(s.get("name")): s for s in (pod.get("status") or {}).get(key) or ()}


def _pod_condition(pod: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    return c.find_condition((pod.get("status") or {}).get("conditions"), type_)


def _terminated_failed(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The failed termination of a container (current or last), if any."""
    state = status.get("state") or {}
    terminated: Mapping[str, Any] | None = state.get("terminated")
    if terminated and terminated.get("exitCode", 0) != 0:
        return terminated
    waiting = state.get("waiting")
    last: Mapping[str, Any] | None = (status.get("lastState") or {}).get("terminated")
    if waiting and last and last.get("exitCode", 0) != 0:
        return last
    return None


def _waiting_reason(status: Mapping[str, Any]) -> str | None:
    waiting = (status.get("state") or {}).get("waiting")
    return str(waiting.get("reason")) if waiting and waiting.get("reason") else None


def _termination_text(terminated: Mapping[str, Any]) -> str:
    detail = terminated.get("message") or terminated.get("reason") or ""
    text = f"exit code {terminated.get('exitCode')}"
    return f"{text}: {str(detail).strip()}" if detail else text


def _scheduling_message(pod: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> str | None:
    """Why the scheduler cannot place ``pod``: its PodScheduled condition, else its latest FailedScheduling."""
    scheduled = _pod_condition(pod, "PodScheduled")
    if scheduled is not None and scheduled.get("status") == "False" and scheduled.get("message"):
        return str(scheduled["message"])
    name = (pod.get("metadata") or {}).get("name")
    matching = [
        e
        for e in events
        if e.get("reason") == "FailedScheduling"
        and (e.get("involvedObject") or {}).get("kind", "Pod") == "Pod"
        and (e.get("involvedObject") or {}).get("name") == name
    ]
    if not matching:
        return None
    latest = max(matching, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    return str(latest.get("message") or "")


def diagnose_pod(pod: Mapping[str, Any], events: Sequence[Mapping[str, Any]], gpu_resource: str) -> PodDiagnosis:
    """Classify one encoder pod. Pure."""
    name = str((pod.get("metadata") or {}).get("name", ""))
    status = pod.get("status") or {}
    phase = status.get("phase", "Pending")
    ready_condition = _pod_condition(pod, "Ready")
    ready = ready_condition is not None and ready_condition.get("status") == "True"
    inits = _statuses(pod, "initContainerStatuses")
    containers = _statuses(pod, "containerStatuses")

    def done(container: str) -> bool:
        if inits and container not in inits:  # not in the pod's spec (SAM 2 pods export no decoder)
            return True
        terminated = ((inits.get(container) or {}).get("state") or {}).get("terminated") or {}
        return bool(terminated) and terminated.get("exitCode", 1) == 0

    cached = (done(_FETCH) and done(_EXPORT)) or bool(containers.get(_ENCODER, {}).get("started")) or ready

    def diagnosis(reason: str | None, progress: str | None, message: str) -> PodDiagnosis:
        return PodDiagnosis(name, ready, cached, reason, progress, message)

    scheduled = _pod_condition(pod, "PodScheduled")
    unscheduled = phase == "Pending" and not (pod.get("spec") or {}).get("nodeName")
    if unscheduled and (scheduled is None or scheduled.get("status") != "True"):
        message = _scheduling_message(pod, events)
        if message:
            reason = c.REASON_INSUFFICIENT_GPU if gpu_resource in message else c.REASON_UNSCHEDULABLE
            return diagnosis(reason=reason, progress=None, message=f"{name}: {message}")
        return diagnosis(reason=None, progress=c.REASON_PODS_PENDING, message=f"{name}: pending")
    for container_name, container_status in [*inits.items(), *containers.items()]:
        waiting = _waiting_reason(container_status)
        failure = _WAITING_FAILURES.get(waiting or "")
        if failure is not None:
            text = ((container_status.get("state") or {}).get("waiting") or {}).get("message") or waiting
            return diagnosis(reason=failure, progress=None, message=f"{name}/{container_name}: {text}")
    for container_name, reason in (
        (_FETCH, c.REASON_CHECKPOINT_FETCH_FAILED),
        (_EXPORT, c.REASON_DECODER_EXPORT_FAILED),
        (_PREPARE, c.REASON_ENCODER_PREPARATION_FAILED),
    ):
        failed = _terminated_failed(inits.get(container_name) or {})
        if failed is not None:
            return diagnosis(
                reason=reason,
                progress=None,
                message=f"{name}/{container_name}: {_termination_text(failed)}",
            )
    encoder = containers.get(_ENCODER) or {}
    if _waiting_reason(encoder) == "CrashLoopBackOff" or (phase == "Failed"):
        failed = _terminated_failed(encoder)
        detail = _termination_text(failed) if failed else "back-off restarting failed container"
        return diagnosis(
            reason=c.REASON_CRASH_LOOP_BACK_OFF,
            progress=None,
            message=f"{name}/encoder: {detail}",
        )
    if ready:
        return diagnosis(reason=None, progress=None, message=f"{name}: ready")
    if not done(_FETCH) and inits:
        progress = c.REASON_CHECKPOINT_FETCHING
    elif not done(_EXPORT) and inits:
        progress = c.REASON_DECODER_EXPORTING
    elif not done(_PREPARE) and inits:
        progress = c.REASON_ENCODER_PREPARING
    else:
        progress = c.REASON_MODEL_LOADING
    return diagnosis(reason=None, progress=progress, message=f"{name}: {progress}")
