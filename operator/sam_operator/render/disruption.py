"""The PodDisruptionBudget: at most one encoder pod evicted at a time. Pure."""

from __future__ import annotations

from typing import Any

from sam_operator.render.labels import child_metadata, selector_labels
from sam_operator.resources import SamModel

__all__ = ["build_pdb"]


def build_pdb(model: SamModel) -> dict[str, Any] | None:
    """A PDB with ``maxUnavailable: 1`` when more than one replica is wanted, else None.

    With autoscaling the decision follows ``minReplicas`` only, so the PDB does not appear and disappear as the
    autoscaler moves ``spec.replicas``. ``maxUnavailable`` (not ``minAvailable``) keeps node drains possible.
    """
    spec = model.spec
    wanted = spec.autoscaling.min_replicas > 1 if spec.autoscaling.enabled else spec.replicas > 1
    if not wanted:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": child_metadata(model.name, model.namespace),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(model.name)}},
    }
