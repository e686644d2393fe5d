"""A SamModel's four conditions (Ready, Progressing, Degraded, ModelCached) from the facts about its rollout. Pure.

:mod:`sam_operator.status` gathers a :class:`Rollout` from the observed children (the Deployment, the encoder
pods' diagnoses, the model-cache PVC) and calls :func:`derive_conditions`. Same inputs, same conditions:
``lastTransitionTime`` only moves when a condition's status changes (``conditions.set_condition``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sam_operator import conditions as c
from sam_operator.pod_diagnosis import PodDiagnosis

__all__ = ["Rollout", "derive_conditions", "invalid_spec_conditions", "ordered"]

_MAX_MESSAGE = 1024
#: The earliest stage any pod is in names Ready's reason: pending, fetching, exporting, preparing, loading.
_PROGRESS_ORDER = (
    c.REASON_PODS_PENDING,
    c.REASON_CHECKPOINT_FETCHING,
    c.REASON_DECODER_EXPORTING,
    c.REASON_ENCODER_PREPARING,
    c.REASON_MODEL_LOADING,
)

Conditions = list[dict[str, Any]]


@dataclass(frozen=True)
class Rollout:
    """What the conditions are derived from."""

    desired: int  # replicas the SamModel asks for
    ready: int  # replicas ready (the Deployment's count, or the ready pods before it reports)
    deployment: Mapping[str, Any] | None  # the encoder Deployment as the API serves it (None: not created yet)
    diagnoses: Sequence[PodDiagnosis]  # one per live encoder pod, sorted by pod name
    shared_volume: bool  # whether the model cache is a PVC that must be Bound
    pvc_phase: str | None  # that PVC's phase (None: missing or not used)
    #: spec.autoscaling.minReplicas 0: at 0 replicas, or starting, the model is still invocable (the gateway
    #: wakes it and holds the invocation), so Ready stays True unless something failed.
    on_demand: bool = False


def _join(messages: Iterable[str]) -> str:
    text = "; ".join(messages)
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _first_failure(diagnoses: Sequence[PodDiagnosis]) -> tuple[str, str] | None:
    for reason in c.FAILURE_REASONS:
        hits = [d for d in diagnoses if d.reason == reason]
        if hits:
            return reason, _join(d.message for d in hits)
    return None


def _deployment_numbers(deployment: Mapping[str, Any] | None) -> dict[str, int]:
    status = (deployment or {}).get("status") or {}
    metadata = (deployment or {}).get("metadata") or {}
    return {
        "generation": int(metadata.get("generation") or 0),
        "observed": int(status.get("observedGeneration") or 0),
        "replicas": int(status.get("replicas") or 0),
        "updated": int(status.get("updatedReplicas") or 0),
        "available": int(status.get("availableReplicas") or 0),
    }


def _deployment_stalled(deployment: Mapping[str, Any] | None) -> str | None:
    progressing = c.find_condition(((deployment or {}).get("status") or {}).get("conditions"), "Progressing")
    if progressing and progressing.get("status") == "False" and progressing.get("reason") == "ProgressDeadlineExceeded":
        return str(progressing.get("message") or "Deployment exceeded its progress deadline")
    return None


class _Writer:
    """Sets conditions on a copy of the previous list, all with the same ``now`` and ``observedGeneration``."""

    def __init__(self, previous: Iterable[Mapping[str, Any]], now: datetime, generation: int) -> None:
        self.conditions: Conditions = [dict(x) for x in previous]
        self._now, self._generation = now, generation

    def put(self, type_: str, status: c.ConditionStatus, reason: str, message: str) -> None:
        self.conditions = c.set_condition(
            self.conditions, type_, status, reason, message, now=self._now, observed_generation=self._generation
        )


def invalid_spec_conditions(
    previous: Iterable[Mapping[str, Any]], reason: str, message: str, now: datetime, generation: int
) -> Conditions:
    """The conditions of a SamModel whose spec cannot be used: every one says why."""
    out = _Writer(previous, now, generation)
    out.put(c.READY, "False", reason, message)
    out.put(c.PROGRESSING, "False", reason, message)
    out.put(c.DEGRADED, "True", reason, message)
    out.put(c.MODEL_CACHED, "Unknown", reason, message)
    return ordered(out.conditions)


def derive_conditions(
    previous: Iterable[Mapping[str, Any]], rollout: Rollout, now: datetime, generation: int
) -> Conditions:
    """The four conditions of a SamModel with a valid spec, in a fixed order (foreign ones kept after them)."""
    out = _Writer(previous, now, generation)
    desired, ready, diagnoses, deployment = rollout.desired, rollout.ready, rollout.diagnoses, rollout.deployment
    numbers = _deployment_numbers(deployment)
    failure = _first_failure(diagnoses)
    stalled = _deployment_stalled(deployment)
    if failure is None and stalled is not None:
        failure = (c.REASON_PROGRESS_DEADLINE_EXCEEDED, stalled)
    pvc_pending = rollout.shared_volume and rollout.pvc_phase != "Bound"
    pvc_text = f"PersistentVolumeClaim is {rollout.pvc_phase or 'missing'}"
    progress_reasons = {d.progress for d in diagnoses if d.progress}
    progress_detail = _join(d.message for d in diagnoses if d.progress)

    # Ready: at least one replica serves, or an on-demand model can be woken (the gateway lists the function then).
    if desired == 0 and rollout.on_demand:
        out.put(
            c.READY,
            "True",
            c.REASON_SCALED_TO_ZERO,
            "asleep at 0 replicas (spec.autoscaling.minReplicas 0); the gateway wakes it on the next invocation",
        )
    elif desired == 0:
        out.put(c.READY, "False", c.REASON_SCALED_TO_ZERO, "spec.replicas is 0")
    elif ready >= desired:
        out.put(c.READY, "True", c.REASON_ALL_REPLICAS_READY, f"{ready}/{desired} replicas ready")
    elif ready > 0:
        out.put(c.READY, "True", c.REASON_PARTIALLY_READY, f"{ready}/{desired} replicas ready")
    elif deployment is None:
        out.put(c.READY, "False", c.REASON_DEPLOYMENT_PENDING, "the encoder Deployment does not exist yet")
    elif failure is not None:
        out.put(c.READY, "False", failure[0], failure[1])
    elif pvc_pending:
        out.put(c.READY, "False", c.REASON_VOLUME_PENDING, pvc_text)
    elif rollout.on_demand:
        detail = f"; {progress_detail}" if progress_detail else ""
        out.put(c.READY, "True", c.REASON_WAKING_UP, f"0/{desired} replicas ready, starting on demand{detail}")
    elif progress_reasons:
        reason = next(r for r in _PROGRESS_ORDER if r in progress_reasons)
        out.put(c.READY, "False", reason, f"0/{desired} replicas ready; {progress_detail}")
    else:
        out.put(c.READY, "False", c.REASON_NO_REPLICAS_READY, f"0/{desired} replicas ready")

    # Progressing: the Deployment is still converging on the current spec.
    complete = (
        deployment is not None
        and numbers["observed"] >= numbers["generation"]
        and numbers["updated"] == desired
        and numbers["replicas"] == desired
        and numbers["available"] == desired
        and ready >= desired
    )
    if stalled is not None:
        out.put(c.PROGRESSING, "False", c.REASON_PROGRESS_DEADLINE_EXCEEDED, stalled)
    elif complete:
        out.put(c.PROGRESSING, "False", c.REASON_ROLLOUT_COMPLETE, f"{desired} replicas up to date and available")
    else:
        out.put(
            c.PROGRESSING,
            "True",
            c.REASON_ROLLOUT_IN_PROGRESS,
            f"{numbers['updated']}/{desired} replicas updated, {numbers['available']} available",
        )

    # Degraded: something needs a human (or a GPU node).
    if failure is not None:
        out.put(c.DEGRADED, "True", failure[0], failure[1])
    else:
        out.put(c.DEGRADED, "False", c.REASON_AS_EXPECTED, "no failures observed")

    # ModelCached: the checkpoint is fetched and verified, the decoder exported (in at least one pod).
    fetch_failure = next(
        (d for d in diagnoses if d.reason in (c.REASON_CHECKPOINT_FETCH_FAILED, c.REASON_DECODER_EXPORT_FAILED)),
        None,
    )
    if any(d.cached for d in diagnoses):
        out.put(c.MODEL_CACHED, "True", c.REASON_CHECKPOINT_READY, "checkpoint verified and decoder exported")
    elif fetch_failure is not None:
        out.put(c.MODEL_CACHED, "False", str(fetch_failure.reason), fetch_failure.message)
    elif pvc_pending and deployment is not None:
        out.put(c.MODEL_CACHED, "False", c.REASON_VOLUME_PENDING, pvc_text)
    elif c.REASON_CHECKPOINT_FETCHING in progress_reasons:
        out.put(c.MODEL_CACHED, "False", c.REASON_CHECKPOINT_FETCHING, "fetching and verifying the checkpoint")
    elif c.REASON_DECODER_EXPORTING in progress_reasons:
        out.put(c.MODEL_CACHED, "False", c.REASON_DECODER_EXPORTING, "exporting the ONNX decoder")
    elif desired == 0:
        out.put(c.MODEL_CACHED, "Unknown", c.REASON_SCALED_TO_ZERO, "no encoder pods")
    else:
        out.put(c.MODEL_CACHED, "Unknown", c.REASON_PODS_PENDING, "no encoder pod has started yet")
    return ordered(out.conditions)


def ordered(conditions: Conditions) -> Conditions:
    """Our four types in a fixed order, then any foreign ones as they were."""
    rank = {t: i for i, t in enumerate(c.CONDITION_TYPES)}
    return sorted(conditions, key=lambda x: rank.get(str(x.get("type")), len(rank)))
