"""Prometheus metrics of the gateway; names are a contract with the chart's dashboards (docs/architecture.md).

Each app gets its own :class:`prometheus_client.CollectorRegistry`, so tests can build many apps in one
process.
``sam_gateway_functions`` and ``sam_gateway_replicas`` are read from the catalog at scrape time, so they never
go stale when a function disappears.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sam_gateway.catalog import Catalog

# Seconds; SAM first clicks take from ~50 ms (GPU, cached) to tens of seconds (CPU vit_h).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class _CatalogCollector(Collector):
    def __init__(self, catalog: Callable[[], Catalog]) -> None:
        self._catalog = catalog

    def collect(self) -> Iterator[Metric]:
        catalog = self._catalog()
        functions = catalog.functions()
        listed = GaugeMetricFamily("sam_gateway_functions", "Functions listed to CVAT")
        listed.add_metric([], len(functions))
        yield listed
        replicas = GaugeMetricFamily("sam_gateway_replicas", "Ready replicas per listed function", labels=["function"])
        for function in functions:
            replicas.add_metric([function.name], len(catalog.replicas(function)))
        yield replicas


class GatewayMetrics:
    """The gateway's metric objects, registered on a private registry."""

    def __init__(self, catalog: Catalog) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "sam_gateway_requests",
            "Invocations answered, by function, mode (dashboard|direct) and HTTP status code",
            ["function", "mode", "code"],
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "sam_gateway_request_duration_seconds",
            "Invocation latency as seen by CVAT, retries included",
            ["function"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_duration = Histogram(
            "sam_gateway_upstream_duration_seconds",
            "Latency of one upstream attempt that produced a response",
            ["function"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "sam_gateway_upstream_errors",
            "Failed upstream attempts and error responses, by reason "
            "(connect|disconnect|bad_answer|timeout|http_4xx|http_5xx)",
            ["function", "reason"],
            registry=self.registry,
        )
        self.routing_decisions = Counter(
            "sam_gateway_routing_decisions",
            "Replica choices: primary (first candidate), retry (a fallback), no_replica",
            ["function", "outcome"],
            registry=self.registry,
        )
        # Scale to zero (sam_gateway.activator).
        self.held_invocations = Gauge(
            "sam_gateway_held_invocations",
            "Invocations waiting for a model woken from zero replicas",
            ["function"],
            registry=self.registry,
        )
        self.wakes = Counter(
            "sam_gateway_wakes",
            "Models woken from zero replicas, by function and reason (dashboard_invocation|direct_invocation)",
            ["function", "reason"],
            registry=self.registry,
        )
        self.sleeps = Counter(
            "sam_gateway_sleeps",
            "Idle models scaled to zero replicas by the gateway",
            ["function"],
            registry=self.registry,
        )
        self.wake_duration = Histogram(
            "sam_gateway_wake_duration_seconds",
            "From the invocation that woke a model to its first ready replica",
            ["function"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.catalog = catalog
        self.registry.register(_CatalogCollector(lambda: self.catalog))
