"""The autoscaler a SamModel renders: an HPA (provider hpa) or a KEDA ScaledObject (provider keda, only where
KEDA's API exists), never both, and never an autoscaler minimum of 0 (sleeping is the gateway's or KEDA's idle
mode's decision)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from harness.operator import sammodel
from sam_operator.cvat import derive_function_name
from sam_operator.render import build_children
from sam_operator.render.autoscaling import (
    ADAPTER_METRICS,
    activity_query,
    build_hpa,
    build_scaledobject,
    latency_query,
    queue_depth_query,
)
from sam_operator.resources import InvalidSpec, SamModel, parse_sammodel
from sam_operator.settings import OperatorSettings
from sam_operator.status import Observed, derive_status

PROMETHEUS = "http://prometheus.monitoring.svc:9090"


def body(**spec: Any) -> dict[str, Any]:
    """harness.operator.sammodel in namespace cvat, as the API server would serve it (uid, generation)."""
    sam = sammodel("sam-b", **spec)
    sam["metadata"].update(namespace="cvat", uid="u1", generation=1)
    return sam


def model(**autoscaling: Any) -> SamModel:
    replicas = autoscaling.pop("replicas", 1)
    parsed = parse_sammodel(body(replicas=replicas, autoscaling={"enabled": True, "maxReplicas": 4, **autoscaling}))
    assert not isinstance(parsed, InvalidSpec), parsed
    return parsed


def test_the_hpa_asks_the_adapter_only_for_the_metrics_the_chart_serves() -> None:
    hpa = build_hpa(model(targetQueueDepth=3, targetLatencyMilliseconds=250))
    assert hpa is not None
    asked = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"]]
    assert asked == list(ADAPTER_METRICS)
    targets = [m["pods"]["target"]["averageValue"] for m in hpa["spec"]["metrics"]]
    assert targets == ["3", "250m"]  # 250 ms as a quantity of seconds
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "samoperator.io/v1alpha1",
        "kind": "SamModel",
        "name": "sam-b",
    }


def test_min_replicas_zero_keeps_the_hpa_at_one_and_lets_the_spec_sleep() -> None:
    sleeping = model(minReplicas=0, targetQueueDepth=2, replicas=0)
    assert sleeping.spec.scales_to_zero
    assert sleeping.spec.effective_replicas == 0  # the Deployment follows the sleep
    hpa = build_hpa(sleeping)
    assert hpa is not None and hpa["spec"]["minReplicas"] == 1  # no HPAScaleToZero gate needed
    assert model(minReplicas=2, targetQueueDepth=2).spec.effective_replicas == 2


def test_replicas_zero_with_a_positive_minimum_is_still_rejected() -> None:
    sam = body(replicas=0, autoscaling={"enabled": True, "minReplicas": 1, "targetQueueDepth": 2})
    parsed = parse_sammodel(sam)
    assert isinstance(parsed, InvalidSpec)
    assert "spec.autoscaling.minReplicas 0" in parsed.message


def test_provider_keda_renders_a_scaledobject_only_where_the_api_exists() -> None:
    keda = model(provider="keda", targetQueueDepth=4, minReplicas=2)
    assert build_hpa(keda) is None
    assert build_scaledobject(keda, PROMETHEUS, api_available=False) is None
    kinds = {c["kind"] for c in build_children(keda, OperatorSettings(), keda_api=True)}
    assert "ScaledObject" in kinds and "HorizontalPodAutoscaler" not in kinds
    kinds = {c["kind"] for c in build_children(keda, OperatorSettings(), keda_api=False)}
    assert not kinds & {"ScaledObject", "HorizontalPodAutoscaler"}
    hpa_model = model(targetQueueDepth=4)
    assert build_scaledobject(hpa_model, PROMETHEUS, api_available=True) is None


def test_the_scaledobject_queries_the_models_own_series() -> None:
    keda = model(provider="keda", targetQueueDepth=4, targetLatencyMilliseconds=1500, minReplicas=2)
    so = build_scaledobject(keda, PROMETHEUS, api_available=True)
    assert so is not None
    spec = so["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 4)
    assert "idleReplicaCount" not in spec
    queue, latency = spec["triggers"]
    assert queue["metricType"] == "AverageValue"
    assert queue["metadata"] == {
        "serverAddress": PROMETHEUS,
        "query": 'sum(sam_inference_queue_depth{namespace="cvat",service="sam-sam-b"})',
        "threshold": "4",
    }
    assert queue["metadata"]["query"] == queue_depth_query(keda)
    assert latency["metricType"] == "Value" and latency["metadata"]["threshold"] == "1.5"
    assert latency["metadata"]["query"] == latency_query(keda)
    assert "sam_inference_request_duration_seconds_sum" in latency_query(keda)


def test_keda_scale_to_zero_is_idle_mode_activated_by_the_gateways_invocations() -> None:
    keda = model(provider="keda", targetQueueDepth=4, minReplicas=0, quietPeriodSeconds=120)
    so = build_scaledobject(keda, PROMETHEUS, api_available=True)
    assert so is not None
    spec = so["spec"]
    # KEDA's own minimum stays 1 (else KEDA scales 0 back up to it); idle mode goes to 0 after the cooldown.
    assert (spec["minReplicaCount"], spec["idleReplicaCount"], spec["cooldownPeriod"]) == (1, 0, 120)
    activity = spec["triggers"][0]
    assert activity["metadata"]["query"] == activity_query(keda)
    assert activity["metadata"]["activationThreshold"] == "0"
    assert "[120s]" in activity_query(keda) and f'function="{derive_function_name(keda)}"' in activity_query(keda)


@pytest.mark.parametrize("bad", [{"provider": "knative"}, {"quietPeriodSeconds": 5}, {"minReplicas": -1}])
def test_bad_autoscaling_fields_are_invalid_specs(bad: dict[str, Any]) -> None:
    sam = body(autoscaling={"enabled": True, "targetQueueDepth": 2, **bad})
    parsed = parse_sammodel(sam)
    assert isinstance(parsed, InvalidSpec)
    assert "spec.autoscaling" in parsed.message


def _status_of(replicas: int, min_replicas: int, deployment: dict[str, Any] | None) -> dict[str, str]:
    autoscaling = {"enabled": True, "minReplicas": min_replicas, "maxReplicas": 4, "targetQueueDepth": 2}
    sam = body(replicas=replicas, autoscaling=autoscaling)
    status = derive_status(sam, Observed(deployment=deployment), datetime(2026, 1, 1, tzinfo=UTC))
    (ready,) = [c for c in status["conditions"] if c["type"] == "Ready"]
    return {"status": ready["status"], "reason": ready["reason"], "message": ready["message"]}


def test_a_sleeping_on_demand_model_stays_ready_so_cvat_keeps_the_tool() -> None:
    deployment = {"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "replicas": 0}}
    asleep = _status_of(replicas=0, min_replicas=0, deployment=deployment)
    assert (asleep["status"], asleep["reason"]) == ("True", "ScaledToZero")
    assert "wakes it on the next invocation" in asleep["message"]
    waking = _status_of(replicas=1, min_replicas=0, deployment=deployment)
    assert (waking["status"], waking["reason"]) == ("True", "WakingUp")
    # Without minReplicas 0 a model with no ready replica is not Ready (nothing would wake it).
    plain = _status_of(replicas=1, min_replicas=1, deployment=deployment)
    assert plain["status"] == "False"
