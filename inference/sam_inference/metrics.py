"""Prometheus metrics of the encoder (`sam_inference_*`); names are a contract with the dashboards.

See docs/architecture.md "Metrics". Each app gets its own `CollectorRegistry`, so several apps (tests)
can live in one process. Implements the cache and batcher observer protocols.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .cache import Lookup

PREFIX = "sam_inference"
STAGES = ("decode_image", "queue_wait", "encode", "serialize", "decode_masks")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    """All encoder metrics on one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests_total",
            "HTTP requests by endpoint and status code.",
            ["endpoint", "code"],
            registry=r,
        )
        self.request_duration = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "HTTP request latency.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_duration = Histogram(
            f"{PREFIX}_stage_duration_seconds",
            "Latency of one processing stage.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            f"{PREFIX}_batch_size",
            "Images per encoder batch.",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
            registry=r,
        )
        self.queue_depth = Gauge(f"{PREFIX}_queue_depth", "Images admitted and waiting for the encoder.", registry=r)
        self.cache_hits = Counter(
            f"{PREFIX}_cache_hits_total",
            "Embedding lookups served from the cache or a computation in flight.",
            registry=r,
        )
        self.cache_misses = Counter(
            f"{PREFIX}_cache_misses_total", "Embedding lookups that ran the encoder.", registry=r
        )
        self.cache_evictions = Counter(
            f"{PREFIX}_cache_evictions_total", "Embeddings evicted from the cache.", registry=r
        )
        self.refined_decodes = Counter(
            f"{PREFIX}_refined_decodes_total",
            "Mask decodes given the previous click's low-res mask (prompt-prefix refinement).",
            registry=r,
        )
        self.cache_bytes = Gauge(f"{PREFIX}_cache_bytes", "Bytes of embeddings in the cache.", registry=r)
        self.cache_entries = Gauge(f"{PREFIX}_cache_entries", "Embeddings in the cache.", registry=r)
        self.model_load_seconds = Gauge(
            f"{PREFIX}_model_load_seconds", "Time to load and warm up the model.", registry=r
        )
        self.ready = Gauge(f"{PREFIX}_ready", "1 when the model is loaded and warmed up.", registry=r)
        self.gpu_memory = Gauge(
            f"{PREFIX}_gpu_memory_bytes",
            "CUDA memory of the encoder process.",
            ["device", "kind"],
            registry=r,
        )
        for stage in STAGES:  # export every stage from the start
            self.stage_duration.labels(stage)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a block as stage `name`."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stage_duration.labels(name).observe(time.perf_counter() - started)

    def observe_request(self, endpoint: str, code: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(code)).inc()
        self.request_duration.labels(endpoint).observe(seconds)

    # cache observer
    def on_lookup(self, outcome: Lookup) -> None:
        (self.cache_misses if outcome is Lookup.MISS else self.cache_hits).inc()

    def on_evict(self, count: int) -> None:
        self.cache_evictions.inc(count)

    def on_size(self, entries: int, nbytes: int) -> None:
        self.cache_entries.set(entries)
        self.cache_bytes.set(nbytes)

    # batcher observer
    def on_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.stage_duration.labels("encode").observe(seconds)

    def on_queue_depth(self, depth: int) -> None:
        self.queue_depth.set(depth)

    def on_queue_wait(self, seconds: float) -> None:
        self.stage_duration.labels("queue_wait").observe(seconds)

    def render(self, gpu_memory: Callable[[], dict[tuple[str, str], int]] | None = None) -> bytes:
        """The text exposition, refreshing GPU memory gauges first."""
        if gpu_memory is not None:
            for (device, kind), value in gpu_memory().items():
                self.gpu_memory.labels(device, kind).set(value)
        return generate_latest(self.registry)
