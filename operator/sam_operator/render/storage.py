"""The shared model-cache PersistentVolumeClaim (only when ``spec.cache.sharedVolume.enabled``). Pure."""

from __future__ import annotations

from typing import Any

from sam_operator.naming import pvc_name
from sam_operator.render.labels import labels
from sam_operator.resources import SamModel

__all__ = ["build_pvc"]


def build_pvc(model: SamModel) -> dict[str, Any] | None:
    """The PVC ``sam-<name>-model-cache`` holding the checkpoint and exported decoder, or None if not asked for."""
    shared = model.spec.cache.shared_volume
    if not shared.enabled:
        return None
    spec: dict[str, Any] = {
        "accessModes": [shared.access_mode],
        "resources": {"requests": {"storage": shared.size}},
    }
    if shared.storage_class_name:
        spec["storageClassName"] = shared.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": pvc_name(model.name),
            "namespace": model.namespace,
            "labels": labels(model.name),
        },
        "spec": spec,
    }
