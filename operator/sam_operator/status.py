"""Derive a SamModel's ``status`` from the live state of its children. Pure and deterministic.

``reconcile`` gathers an :class:`Observed` snapshot (the Deployment, the encoder pods, recent Events about them,
the model-cache PVC, and the direct-mode port it decided with :func:`sam_operator.ports.choose_http_port`) and
calls :func:`derive_status`. Three concerns, three modules: what each pod is doing
(:mod:`~sam_operator.pod_diagnosis`), the conditions (:mod:`~sam_operator.status_conditions`) and what CVAT is
told (:mod:`~sam_operator.cvat`, in the shape of ``sam_contract.cvat.CvatStatus``). Same inputs give an identical
dict (pods, events and messages are sorted; ``lastTransitionTime`` only moves when a condition's status changes),
so the caller writes status only when it differs from what is stored. Output shape: ``docs/architecture.md``
"SamModel status". The selector and endpoint are the rendered Deployment's and Service's (``render``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sam_operator.cvat import derive_cvat_status
from sam_operator.pod_diagnosis import diagnose_pod
from sam_operator.render.labels import selector_string
from sam_operator.render.service import service_endpoint
from sam_operator.resources import InvalidSpec, SamModel, parse_sammodel
from sam_operator.status_conditions import Rollout, derive_conditions, invalid_spec_conditions

__all__ = ["Observed", "derive_status"]

#: What a SamModel with an invalid spec keeps of its previous status (besides its conditions).
_KEPT_WHEN_INVALID = ("replicas", "readyReplicas", "selector", "endpoint", "cvat")


@dataclass(frozen=True)
class Observed:
    """Live state of one SamModel's children, as ``reconcile`` read it (plain API dicts)."""

    deployment: Mapping[str, Any] | None = None
    pods: Sequence[Mapping[str, Any]] = ()
    events: Sequence[Mapping[str, Any]] = ()
    pvc: Mapping[str, Any] | None = None
    #: The direct-mode port ``reconcile`` decided (``ports.choose_http_port``); None: no port.
    http_port: int | None = None


def _live_pods(pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    return sorted(live, key=lambda p: str((p.get("metadata") or {}).get("name", "")))


def _rollout(model: SamModel, observed: Observed) -> Rollout:
    desired = model.spec.effective_replicas
    diagnoses = [
        diagnose_pod(p, observed.events, model.spec.resources.gpu_resource_name) for p in _live_pods(observed.pods)
    ]
    deployment_status = (observed.deployment or {}).get("status") or {}
    if observed.deployment is None:
        ready = 0
    elif deployment_status.get("observedGeneration") is not None:
        ready = int(deployment_status.get("readyReplicas") or 0)
    else:  # the Deployment controller has not reported yet: count the ready pods ourselves
        ready = min(sum(1 for d in diagnoses if d.ready), desired)
    return Rollout(
        desired=desired,
        ready=ready,
        deployment=observed.deployment,
        diagnoses=diagnoses,
        shared_volume=model.spec.cache.shared_volume.enabled,
        pvc_phase=((observed.pvc or {}).get("status") or {}).get("phase"),
        on_demand=model.spec.scales_to_zero,
    )


def derive_status(body: Mapping[str, Any], observed: Observed, now: datetime) -> dict[str, Any]:
    """The complete ``status`` SamModel ``body`` should have, given ``observed``. Pure; ``now`` is only used
    as ``lastTransitionTime`` of conditions whose status changes. Does not modify its inputs."""
    previous = body.get("status") or {}
    generation = int((body.get("metadata") or {}).get("generation") or 0)
    previous_conditions = previous.get("conditions") or ()
    parsed = parse_sammodel(body)
    if isinstance(parsed, InvalidSpec):
        conditions = invalid_spec_conditions(previous_conditions, parsed.reason, parsed.message, now, generation)
        kept = {k: v for k, v in previous.items() if k in _KEPT_WHEN_INVALID}
        return {"observedGeneration": generation, **kept, "conditions": conditions}
    rollout = _rollout(parsed, observed)
    return {
        "observedGeneration": generation,
        "replicas": rollout.desired,
        "readyReplicas": rollout.ready,
        "selector": selector_string(parsed.name),
        "endpoint": service_endpoint(parsed.name, parsed.namespace),
        "conditions": derive_conditions(previous_conditions, rollout, now, generation),
        "cvat": derive_cvat_status(parsed, observed.http_port).to_status(),
    }
