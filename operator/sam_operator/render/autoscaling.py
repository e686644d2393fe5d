"""The HorizontalPodAutoscaler (autoscaling/v2) of a SamModel. Pure.

The HPA scales the **SamModel itself** through its scale subresource (``spec.replicas``; the HPA finds the pods
through ``status.selector``), so there is one source of the replica count and the Deployment follows it.
Its Pods metrics come from a custom-metrics adapter (e.g. prometheus-adapter) that must serve:
- ``sam_inference_queue_depth``: the encoder's queue-depth gauge, per pod;
- ``sam_inference_request_duration_seconds_average``: mean request latency per pod, derived by the adapter from
  the ``sam_inference_request_duration_seconds`` histogram (``rate(sum)/rate(count)``).
Without an adapter the HPA reports ``FailedGetPodsMetric`` and leaves the replica count alone.
"""

from __future__ import annotations

from typing import Any

from sam_operator.naming import child_name
from sam_operator.render.labels import labels
from sam_operator.resources import API_VERSION, KIND, SamModel

__all__ = ["LATENCY_METRIC", "QUEUE_DEPTH_METRIC", "build_hpa"]

QUEUE_DEPTH_METRIC = "sam_inference_queue_depth"
LATENCY_METRIC = "sam_inference_request_duration_seconds_average"


def _pods_metric(name: str, average_value: str) -> dict[str, Any]:
    return {
        "type": "Pods",
        "pods": {"metric": {"name": name}, "target": {"type": "AverageValue", "averageValue": average_value}},
    }


def build_hpa(model: SamModel) -> dict[str, Any] | None:
    """The HPA when ``spec.autoscaling.enabled``, else None."""
    autoscaling = model.spec.autoscaling
    if not autoscaling.enabled:
        return None
    metrics = []
    if autoscaling.target_queue_depth is not None:
        metrics.append(_pods_metric(QUEUE_DEPTH_METRIC, str(autoscaling.target_queue_depth)))
    if autoscaling.target_latency_milliseconds is not None:
        # Milliseconds as a quantity of seconds: 250 ms -> "250m".
        metrics.append(_pods_metric(LATENCY_METRIC, f"{autoscaling.target_latency_milliseconds}m"))
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": child_name(model.name),
            "namespace": model.namespace,
            "labels": labels(model.name),
        },
        "spec": {
            "scaleTargetRef": {"apiVersion": API_VERSION, "kind": KIND, "name": model.name},
            "minReplicas": autoscaling.min_replicas,
            "maxReplicas": autoscaling.max_replicas,
            "metrics": metrics,
            # Encoder pods take minutes to load a model: scale up promptly, scale down slowly.
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 0},
                "scaleDown": {"stabilizationWindowSeconds": 300},
            },
        },
    }
