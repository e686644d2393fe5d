"""The operator's own Prometheus metrics (names are a contract with the chart's dashboards and alerts)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter("sam_operator_reconcile_total", "Reconciles of SamModels, by result.", ["result"])
RECONCILE_DURATION = Histogram(
    "sam_operator_reconcile_duration_seconds",
    "Time spent in one reconcile of a SamModel.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
WRITES = Counter("sam_operator_writes_total", "Writes the operator made to the API server.", ["kind", "verb"])
SAMMODELS = Gauge("sam_operator_sammodels", "SamModels by condition type and status.", ["condition", "status"])
