"""Condition types and reasons of a SamModel, and ``set_condition`` (metav1.Condition semantics).

Types and reasons are CamelCase constants (the printer column shows the Ready reason). ``set_condition`` returns
a new list and keeps ``lastTransitionTime`` when the status did not change, so recomputing status from the same
live state yields identical conditions. Pure; called by ``status``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = [
    "CONDITION_TYPES",
    "DEGRADED",
    "MODEL_CACHED",
    "PROGRESSING",
    "READY",
    "ConditionStatus",
    "find_condition",
    "format_time",
    "set_condition",
]

ConditionStatus = Literal["True", "False", "Unknown"]

# Types.
READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
MODEL_CACHED = "ModelCached"
CONDITION_TYPES = (READY, PROGRESSING, DEGRADED, MODEL_CACHED)

# Reasons: healthy.
REASON_ALL_REPLICAS_READY = "AllReplicasReady"
REASON_PARTIALLY_READY = "PartiallyReady"
REASON_ROLLOUT_COMPLETE = "RolloutComplete"
REASON_AS_EXPECTED = "AsExpected"
REASON_CHECKPOINT_READY = "CheckpointReady"
# Reasons: in progress.
REASON_ROLLOUT_IN_PROGRESS = "RolloutInProgress"
REASON_DEPLOYMENT_PENDING = "DeploymentPending"
REASON_PODS_PENDING = "PodsPending"
REASON_CHECKPOINT_FETCHING = "CheckpointFetching"
REASON_DECODER_EXPORTING = "DecoderExporting"
REASON_ENCODER_PREPARING = "EncoderPreparing"
REASON_MODEL_LOADING = "ModelLoading"
REASON_VOLUME_PENDING = "VolumePending"
REASON_SCALED_TO_ZERO = "ScaledToZero"
#: A minReplicas-0 SamModel whose replicas are starting: still invocable (the gateway holds invocations).
REASON_WAKING_UP = "WakingUp"
REASON_NO_REPLICAS_READY = "NoReplicasReady"
# Reasons: failures.
REASON_INVALID_SPEC = "InvalidSpec"
REASON_INSUFFICIENT_GPU = "InsufficientGPU"
REASON_UNSCHEDULABLE = "Unschedulable"
REASON_IMAGE_PULL_FAILED = "ImagePullFailed"
REASON_CHECKPOINT_FETCH_FAILED = "CheckpointFetchFailed"
REASON_DECODER_EXPORT_FAILED = "DecoderExportFailed"
REASON_ENCODER_PREPARATION_FAILED = "EncoderPreparationFailed"
REASON_CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
REASON_CONTAINER_CONFIG_ERROR = "ContainerConfigError"
REASON_PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"

#: Failure reasons, most specific / most actionable first: when pods fail for several reasons, the first wins.
FAILURE_REASONS = (
    REASON_INSUFFICIENT_GPU,
    REASON_UNSCHEDULABLE,
    REASON_IMAGE_PULL_FAILED,
    REASON_CONTAINER_CONFIG_ERROR,
    REASON_CHECKPOINT_FETCH_FAILED,
    REASON_DECODER_EXPORT_FAILED,
    REASON_ENCODER_PREPARATION_FAILED,
    REASON_CRASH_LOOP_BACK_OFF,
    REASON_PROGRESS_DEADLINE_EXCEEDED,
)


def format_time(now: datetime) -> str:
    """RFC 3339 in UTC with second precision, as metav1.Time serialises (``2024-01-02T03:04:05Z``)."""
    if now.tzinfo is not None:
        now = now.astimezone(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def find_condition(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    """The condition of ``type_`` in ``conditions``, or None."""
    for condition in conditions or ():
        if condition.get("type") == type_:
            return condition
    return None


def set_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    now: datetime,
    observed_generation: int | None = None,
) -> list[dict[str, Any]]:
    """Return a copy of ``conditions`` with condition ``type_`` set; the input is not modified.

    ``lastTransitionTime`` is kept from the existing condition when ``status`` is unchanged (a changed reason or
    message alone is not a transition) and set to ``now`` otherwise. Other conditions keep their order; a new
    condition is appended.
    """
    previous = find_condition(conditions, type_)
    transition = (
        str(previous["lastTransitionTime"])
        if previous is not None and previous.get("status") == status and previous.get("lastTransitionTime")
        else format_time(now)
    )
    updated: dict[str, Any] = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
    }
    if observed_generation is not None:
        updated["observedGeneration"] = observed_generation
    result: list[dict[str, Any]] = []
    replaced = False
    for condition in conditions or ():
        if condition.get("type") == type_:
            result.append(updated)
            replaced = True
        else:
            result.append(dict(condition))
    if not replaced:
        result.append(updated)
    return result
