"""Derive a SamModel's ``status`` from the live state of its children. Pure and deterministic.

``reconcile`` gathers an ``Observed`` snapshot (the Deployment, the encoder pods, recent Events about them, the
model-cache PVC, the direct-mode ports other SamModels hold) and calls ``derive_status``. Same inputs give an
identical dict (pods, events and messages are sorted; ``lastTransitionTime`` only moves when a condition's status
changes), so the caller writes status only when it differs from what is stored. Output shape:
``docs/architecture.md`` "SamModel status".
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sam_contract.cvat import CvatStatus

from sam_operator import conditions as c
from sam_operator.cvat import (
    allocate_http_port,
    build_annotations,
    derive_description,
    derive_display_name,
    derive_function_name,
    derive_warnings,
)
from sam_operator.render.labels import selector_string
from sam_operator.render.service import service_endpoint
from sam_operator.resources import InvalidSpec, SamModel, parse_sammodel
from sam_operator.settings import OperatorSettings

__all__ = ["Observed", "PodDiagnosis", "derive_status", "diagnose_pod"]

_FETCH = "fetch-checkpoint"
_EXPORT = "export-decoder"
_ENCODER = "encoder"
_IMAGE_PULL_REASONS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
_CONFIG_REASONS = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
_MAX_MESSAGE = 1024


@dataclass(frozen=True)
class Observed:
    """Live state of one SamModel's children, as ``reconcile`` read it (plain API dicts)."""

    deployment: Mapping[str, Any] | None = None
    pods: Sequence[Mapping[str, Any]] = ()
    events: Sequence[Mapping[str, Any]] = ()
    pvc: Mapping[str, Any] | None = None
    #: Direct-mode ports this SamModel must not use: held by *other* SamModels (see ``ports.PortBook``).
    taken_http_ports: Container[int] = field(default_factory=frozenset)


@dataclass(frozen=True)
class PodDiagnosis:
    """What one encoder pod is doing: a failure reason (``conditions.FAILURE_REASONS``) or a progress reason."""

    pod: str
    ready: bool
    cached: bool  # both init containers completed
    reason: str | None  # failure reason, or None
    progress: str | None  # CheckpointFetching / DecoderExporting / ModelLoading / PodsPending, or None
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
        if waiting in _IMAGE_PULL_REASONS:
            text = ((container_status.get("state") or {}).get("waiting") or {}).get("message") or waiting
            return diagnosis(
                reason=c.REASON_IMAGE_PULL_FAILED,
                progress=None,
                message=f"{name}/{container_name}: {text}",
            )
        if waiting in _CONFIG_REASONS:
            text = ((container_status.get("state") or {}).get("waiting") or {}).get("message") or waiting
            return diagnosis(
                reason=c.REASON_CONTAINER_CONFIG_ERROR,
                progress=None,
                message=f"{name}/{container_name}: {text}",
            )
    for container_name, reason in (
        (_FETCH, c.REASON_CHECKPOINT_FETCH_FAILED),
        (_EXPORT, c.REASON_DECODER_EXPORT_FAILED),
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
    else:
        progress = c.REASON_MODEL_LOADING
    return diagnosis(reason=None, progress=progress, message=f"{name}: {progress}")


def _first_failure(diagnoses: Sequence[PodDiagnosis]) -> tuple[str, str] | None:
    for reason in c.FAILURE_REASONS:
        hits = [d for d in diagnoses if d.reason == reason]
        if hits:
            return reason, _join(d.message for d in hits)
    return None


def _join(messages: Any) -> str:
    text = "; ".join(messages)
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _deployment_numbers(deployment: Mapping[str, Any] | None) -> dict[str, int]:
    status = (deployment or {}).get("status") or {}
    metadata = (deployment or {}).get("metadata") or {}
    return {
        "generation": int(metadata.get("generation") or 0),
        "observed": int(status.get("observedGeneration") or 0),
        "replicas": int(status.get("replicas") or 0),
        "updated": int(status.get("updatedReplicas") or 0),
        "ready": int(status.get("readyReplicas") or 0),
        "available": int(status.get("availableReplicas") or 0),
    }


def _deployment_stalled(deployment: Mapping[str, Any] | None) -> str | None:
    progressing = c.find_condition(((deployment or {}).get("status") or {}).get("conditions"), "Progressing")
    if progressing and progressing.get("status") == "False" and progressing.get("reason") == "ProgressDeadlineExceeded":
        return str(progressing.get("message") or "Deployment exceeded its progress deadline")
    return None


def _live_pods(pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    return sorted(live, key=lambda p: str((p.get("metadata") or {}).get("name", "")))


def _cvat_status(
    model: SamModel, previous: Mapping[str, Any], settings: OperatorSettings, taken: Container[int]
) -> dict[str, Any]:
    port: int | None = None
    if model.spec.cvat.enabled:
        base, size = settings.direct_port_base, settings.direct_port_range_size
        kept = previous.get("httpPort")
        if isinstance(kept, int) and base <= kept < base + size and kept not in taken:
            port = kept
        else:
            port = allocate_http_port(f"{model.namespace}/{model.name}", taken, base, size)
    return CvatStatus(
        enabled=model.spec.cvat.enabled,
        function_name=derive_function_name(model),
        display_name=derive_display_name(model),
        mode=model.spec.cvat.mode,
        description=derive_description(model),
        http_port=port,
        annotations=build_annotations(model),
        warnings=derive_warnings(model),
    ).to_status()


def derive_status(
    body: Mapping[str, Any], observed: Observed, now: datetime, settings: OperatorSettings | None = None
) -> dict[str, Any]:
    """The complete ``status`` SamModel ``body`` should have, given ``observed``. Pure; ``now`` is only used
    as ``lastTransitionTime`` of conditions whose status changes. Does not modify its inputs."""
    settings = settings or OperatorSettings()
    metadata = body.get("metadata") or {}
    previous = body.get("status") or {}
    generation = int(metadata.get("generation") or 0)
    conditions: list[dict[str, Any]] = [dict(x) for x in previous.get("conditions") or ()]

    def put(type_: str, status: c.ConditionStatus, reason: str, message: str) -> None:
        nonlocal conditions
        conditions = c.set_condition(
            conditions, type_, status, reason, message, now=now, observed_generation=generation
        )

    parsed = parse_sammodel(body)
    if isinstance(parsed, InvalidSpec):
        put(c.READY, "False", parsed.reason, parsed.message)
        put(c.PROGRESSING, "False", parsed.reason, parsed.message)
        put(c.DEGRADED, "True", parsed.reason, parsed.message)
        put(c.MODEL_CACHED, "Unknown", parsed.reason, parsed.message)
        result = {
            k: v for k, v in previous.items() if k in ("replicas", "readyReplicas", "selector", "endpoint", "cvat")
        }
        return {"observedGeneration": generation, **result, "conditions": _ordered(conditions)}

    model = parsed
    desired = model.spec.effective_replicas
    numbers = _deployment_numbers(observed.deployment)
    pods = _live_pods(observed.pods)
    diagnoses = [diagnose_pod(p, observed.events, model.spec.resources.gpu_resource_name) for p in pods]
    ready_pods = sum(1 for d in diagnoses if d.ready)
    if observed.deployment is None:
        ready = 0
    elif (observed.deployment.get("status") or {}).get("observedGeneration") is not None:
        ready = numbers["ready"]
    else:  # the Deployment controller has not reported yet: count the ready pods ourselves
        ready = min(ready_pods, desired)
    failure = _first_failure(diagnoses)
    stalled = _deployment_stalled(observed.deployment)
    if failure is None and stalled is not None:
        failure = (c.REASON_PROGRESS_DEADLINE_EXCEEDED, stalled)
    pvc_phase = ((observed.pvc or {}).get("status") or {}).get("phase")
    pvc_pending = model.spec.cache.shared_volume.enabled and pvc_phase != "Bound"

    progress_reasons = sorted({d.progress for d in diagnoses if d.progress})
    progress_detail = _join(d.message for d in diagnoses if d.progress)

    # Ready: at least one replica serves (the gateway lists the function then).
    if desired == 0:
        put(c.READY, "False", c.REASON_SCALED_TO_ZERO, "spec.replicas is 0")
    elif ready >= desired:
        put(c.READY, "True", c.REASON_ALL_REPLICAS_READY, f"{ready}/{desired} replicas ready")
    elif ready > 0:
        put(c.READY, "True", c.REASON_PARTIALLY_READY, f"{ready}/{desired} replicas ready")
    elif observed.deployment is None:
        put(c.READY, "False", c.REASON_DEPLOYMENT_PENDING, "the encoder Deployment does not exist yet")
    elif failure is not None:
        put(c.READY, "False", failure[0], failure[1])
    elif pvc_pending:
        put(c.READY, "False", c.REASON_VOLUME_PENDING, f"PersistentVolumeClaim is {pvc_phase or 'missing'}")
    elif progress_reasons:
        # The earliest stage any pod is in: fetching before exporting before loading.
        order = [
            c.REASON_PODS_PENDING,
            c.REASON_CHECKPOINT_FETCHING,
            c.REASON_DECODER_EXPORTING,
            c.REASON_MODEL_LOADING,
        ]
        reason = next(r for r in order if r in progress_reasons)
        put(c.READY, "False", reason, f"0/{desired} replicas ready; {progress_detail}")
    else:
        put(c.READY, "False", c.REASON_NO_REPLICAS_READY, f"0/{desired} replicas ready")

    # Progressing: the Deployment is still converging on the current spec.
    complete = (
        observed.deployment is not None
        and numbers["observed"] >= numbers["generation"]
        and numbers["updated"] == desired
        and numbers["replicas"] == desired
        and numbers["available"] == desired
        and ready >= desired
    )
    if stalled is not None:
        put(c.PROGRESSING, "False", c.REASON_PROGRESS_DEADLINE_EXCEEDED, stalled)
    elif complete:
        put(c.PROGRESSING, "False", c.REASON_ROLLOUT_COMPLETE, f"{desired} replicas up to date and available")
    else:
        put(
            c.PROGRESSING,
            "True",
            c.REASON_ROLLOUT_IN_PROGRESS,
            f"{numbers['updated']}/{desired} replicas updated, {numbers['available']} available",
        )

    # Degraded: something needs a human (or a GPU node).
    if failure is not None:
        put(c.DEGRADED, "True", failure[0], failure[1])
    else:
        put(c.DEGRADED, "False", c.REASON_AS_EXPECTED, "no failures observed")

    # ModelCached: the checkpoint is fetched and verified, the decoder exported (in at least one pod).
    fetch_failure = next(
        (d for d in diagnoses if d.reason in (c.REASON_CHECKPOINT_FETCH_FAILED, c.REASON_DECODER_EXPORT_FAILED)),
        None,
    )
    if any(d.cached for d in diagnoses):
        put(c.MODEL_CACHED, "True", c.REASON_CHECKPOINT_READY, "checkpoint verified and decoder exported")
    elif fetch_failure is not None:
        put(c.MODEL_CACHED, "False", str(fetch_failure.reason), fetch_failure.message)
    elif pvc_pending and observed.deployment is not None:
        put(
            c.MODEL_CACHED,
            "False",
            c.REASON_VOLUME_PENDING,
            f"PersistentVolumeClaim is {pvc_phase or 'missing'}",
        )
    elif c.REASON_CHECKPOINT_FETCHING in progress_reasons:
        put(c.MODEL_CACHED, "False", c.REASON_CHECKPOINT_FETCHING, "fetching and verifying the checkpoint")
    elif c.REASON_DECODER_EXPORTING in progress_reasons:
        put(c.MODEL_CACHED, "False", c.REASON_DECODER_EXPORTING, "exporting the ONNX decoder")
    elif desired == 0:
        put(c.MODEL_CACHED, "Unknown", c.REASON_SCALED_TO_ZERO, "no encoder pods")
    else:
        put(c.MODEL_CACHED, "Unknown", c.REASON_PODS_PENDING, "no encoder pod has started yet")

    return {
        "observedGeneration": generation,
        "replicas": desired,
        "readyReplicas": ready,
        "selector": selector_string(model.name),
        "endpoint": service_endpoint(model.name, model.namespace),
        "conditions": _ordered(conditions),
        "cvat": _cvat_status(model, previous.get("cvat") or {}, settings, observed.taken_http_ports),
    }


def _ordered(conditions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our four types in a fixed order, then any foreign ones as they were."""
    rank = {t: i for i, t in enumerate(c.CONDITION_TYPES)}
    return sorted(conditions, key=lambda x: rank.get(str(x.get("type")), len(rank)))
