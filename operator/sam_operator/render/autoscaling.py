"""The autoscaler of a SamModel: a HorizontalPodAutoscaler (autoscaling/v2) or a KEDA ScaledObject. Pure.

Both scale the **SamModel itself** through its scale subresource (``spec.replicas``; the HPA finds the pods
through ``status.selector``), so there is one source of the replica count and the Deployment follows it.

provider ``hpa``: Pods metrics from a custom-metrics adapter. The chart's ``prometheusAdapter.rules`` (see
:data:`ADAPTER_METRICS`) serve exactly these two:
- ``sam_inference_queue_depth``: the encoder's queue-depth gauge, per pod;
- ``sam_inference_request_duration_seconds_average``: mean request latency per pod, derived by the adapter from
  the ``sam_inference_request_duration_seconds`` histogram (``rate(sum)/rate(count)``).
Without an adapter the HPA reports ``FailedGetPodsMetric`` and leaves the replica count alone.

provider ``keda``: a ScaledObject whose Prometheus triggers query the same series (rendered only when the caller
has seen the ``keda.sh`` API; KEDA then owns an HPA of its own, so none is rendered here).

Neither autoscaler's HPA goes below 1 replica; ``minReplicas: 0`` is scale to zero, and someone else decides it:
- hpa: the gateway (the activator) sets ``spec.replicas`` to 0 after the quiet period without an invocation and
  back to 1 on the next one. An HPA whose target has 0 replicas goes inactive (``ScalingActive=False``, reason
  ``ScalingDisabled``) until then, so no alpha ``HPAScaleToZero`` feature gate is needed;
- keda: KEDA's idle mode (``idleReplicaCount: 0``, ``cooldownPeriod`` = the quiet period) with an activation
  trigger on the gateway's invocations of the model's function, which is what KEDA scales from 0 on. The gateway
  holds the first invocation until a replica is Ready but leaves the replica count to KEDA (a wake written by the
  gateway would be undone by KEDA until Prometheus has scraped the invocation).
"""

from __future__ import annotations

from typing import Any

from sam_operator.cvat import derive_function_name
from sam_operator.naming import child_name
from sam_operator.render.labels import child_metadata
from sam_operator.resources import API_VERSION, KIND, SamModel

__all__ = [
    "ADAPTER_METRICS",
    "KEDA_API_VERSION",
    "LATENCY_METRIC",
    "QUEUE_DEPTH_METRIC",
    "activity_query",
    "build_hpa",
    "build_scaledobject",
    "latency_query",
    "queue_depth_query",
]

QUEUE_DEPTH_METRIC = "sam_inference_queue_depth"
LATENCY_METRIC = "sam_inference_request_duration_seconds_average"
#: Every Pods metric a rendered HPA can ask for; the chart's adapter rules serve exactly these.
ADAPTER_METRICS = (QUEUE_DEPTH_METRIC, LATENCY_METRIC)
KEDA_API_VERSION = "keda.sh/v1alpha1"
LATENCY_HISTOGRAM = "sam_inference_request_duration_seconds"
#: The rate window of the latency average (KEDA's query; the chart's adapter rule uses the same).
RATE_WINDOW = "2m"


def _behavior(model: SamModel) -> dict[str, Any]:
    """Encoder pods take minutes to load a model: scale up promptly, scale down slowly (by default)."""
    return {
        "scaleUp": {"stabilizationWindowSeconds": 0},
        "scaleDown": {"stabilizationWindowSeconds": model.spec.autoscaling.scale_down_stabilization_seconds},
    }


def _pods_metric(name: str, average_value: str) -> dict[str, Any]:
    return {
        "type": "Pods",
        "pods": {"metric": {"name": name}, "target": {"type": "AverageValue", "averageValue": average_value}},
    }


def _scale_target(model: SamModel) -> dict[str, str]:
    return {"apiVersion": API_VERSION, "kind": KIND, "name": model.name}


def _floor(model: SamModel) -> int:
    """The autoscaler's own minimum: at least 1 (0 replicas is the gateway's decision, not the autoscaler's)."""
    return max(1, model.spec.autoscaling.min_replicas)


def build_hpa(model: SamModel) -> dict[str, Any] | None:
    """The HPA when ``spec.autoscaling.enabled`` with provider ``hpa``, else None."""
    autoscaling = model.spec.autoscaling
    if not autoscaling.enabled or autoscaling.provider != "hpa":
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
        "metadata": child_metadata(model.name, model.namespace),
        "spec": {
            "scaleTargetRef": _scale_target(model),
            "minReplicas": _floor(model),
            "maxReplicas": autoscaling.max_replicas,
            "metrics": metrics,
            "behavior": _behavior(model),
        },
    }


def _series_selector(model: SamModel) -> str:
    """The encoder pods' series: the labels a ServiceMonitor scrape (or the chart's scrape config) attaches."""
    return f'namespace="{model.namespace}",service="{child_name(model.name)}"'


def queue_depth_query(model: SamModel) -> str:
    """Total queue depth over the model's pods (KEDA divides by the replica count: AverageValue)."""
    return f"sum({QUEUE_DEPTH_METRIC}{{{_series_selector(model)}}})"


def latency_query(model: SamModel) -> str:
    """Mean request latency over the model's pods, in seconds."""
    selector, window = _series_selector(model), RATE_WINDOW
    return (
        f"sum(rate({LATENCY_HISTOGRAM}_sum{{{selector}}}[{window}]))"
        f" / sum(rate({LATENCY_HISTOGRAM}_count{{{selector}}}[{window}]))"
    )


def _prometheus_trigger(server: str, query: str, threshold: str, metric_type: str) -> dict[str, Any]:
    return {
        "type": "prometheus",
        "metricType": metric_type,
        "metadata": {"serverAddress": server, "query": query, "threshold": threshold},
    }


def activity_query(model: SamModel) -> str:
    """Invocations of the model's function through the gateway over the quiet period, held ones included."""
    function = f'function="{derive_function_name(model)}"'
    window = f"{model.spec.autoscaling.quiet_period_seconds}s"
    return (
        f"sum(increase(sam_gateway_requests_total{{{function}}}[{window}]))"
        f" + sum(sam_gateway_held_invocations{{{function}}})"
    )


def build_scaledobject(model: SamModel, prometheus_address: str, *, api_available: bool) -> dict[str, Any] | None:
    """The KEDA ScaledObject when autoscaling is enabled with provider ``keda`` and the API exists, else None."""
    autoscaling = model.spec.autoscaling
    if not (api_available and autoscaling.enabled and autoscaling.provider == "keda"):
        return None
    triggers = []
    if model.spec.scales_to_zero:
        # Never scales by itself (a threshold no count reaches); active while any invocation came in the window.
        activity = _prometheus_trigger(prometheus_address, activity_query(model), "1000000000", "Value")
        activity["metadata"]["activationThreshold"] = "0"
        triggers.append(activity)
    if autoscaling.target_queue_depth is not None:
        triggers.append(
            _prometheus_trigger(
                prometheus_address, queue_depth_query(model), str(autoscaling.target_queue_depth), "AverageValue"
            )
        )
    if autoscaling.target_latency_milliseconds is not None:
        seconds = f"{autoscaling.target_latency_milliseconds / 1000:g}"
        triggers.append(_prometheus_trigger(prometheus_address, latency_query(model), seconds, "Value"))
    return {
        "apiVersion": KEDA_API_VERSION,
        "kind": "ScaledObject",
        "metadata": child_metadata(model.name, model.namespace),
        "spec": {
            "scaleTargetRef": _scale_target(model),
            "minReplicaCount": _floor(model),
            "maxReplicaCount": autoscaling.max_replicas,
            "pollingInterval": 15,
            **(
                {"idleReplicaCount": 0, "cooldownPeriod": autoscaling.quiet_period_seconds}
                if model.spec.scales_to_zero
                else {}
            ),
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "name": f"keda-{child_name(model.name)}",
                    "behavior": _behavior(model),
                }
            },
            "triggers": triggers,
        },
    }
