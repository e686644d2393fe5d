"""Scale to zero through the gateway: a held invocation wakes a sleeping SamModel and is answered by the replica
that comes up; an idle model is put to sleep after its quiet period, unless its replicas served someone else.

The upstream is a fake encoder on loopback; the API writes go to a recording fake scaler (the real one is
exercised on kind, tests/kind/test_autoscaling_on_kind.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestClient
from sam_gateway.activator import Activator, work_requests
from sam_gateway.app import attach_activator, create_app
from sam_gateway.catalog import Catalog, Function
from sam_gateway.metrics import GatewayMetrics
from sam_gateway.settings import GatewaySettings
from unit.gateway.gateway_samples import SAM_FUNCTION, EncoderFactory, invocation_body, metric, pod, sammodel

ANNOTATION = "samoperator.io/test-address"
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
HEADERS = {"x-nuclio-function-name": SAM_FUNCTION, "x-nuclio-path": "/", "Content-Type": "application/json"}


@dataclass
class RecordingScaler:
    """Records the scale writes and events; ``on_scale`` plays the cluster's answer to a write."""

    scaled: list[tuple[str, str, int]] = field(default_factory=list)
    events: list[tuple[str, str]] = field(default_factory=list)
    on_scale: Callable[[int], None] | None = None

    async def set_replicas(self, namespace: str, name: str, replicas: int) -> None:
        self.scaled.append((namespace, name, replicas))
        if self.on_scale is not None:
            self.on_scale(replicas)

    async def record_event(self, function: Function, reason: str, message: str) -> None:
        self.events.append((reason, message))


def scale_to_zero_model(replicas: int, provider: str = "hpa", quiet: int = 60, min_replicas: int = 0) -> dict[str, Any]:
    body = sammodel()
    body["spec"]["replicas"] = replicas
    body["spec"]["autoscaling"] = {
        "enabled": True,
        "provider": provider,
        "minReplicas": min_replicas,
        "maxReplicas": 3,
        "quietPeriodSeconds": quiet,
        "targetQueueDepth": 2,
    }
    return body


def settings(**overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "pod_address_annotation": ANNOTATION,
        "direct_enabled": False,
        "upstream_timeout_s": 5.0,
        "connect_timeout_s": 1.0,
        "wake_timeout_s": 3.0,
    }
    values.update(overrides)
    return GatewaySettings(**values)


async def gateway(aiohttp_client: ClientFactory, catalog: Catalog, scaler: RecordingScaler) -> TestClient[Any, Any]:
    app = create_app(settings(), catalog)
    attach_activator(app, scaler)
    return await aiohttp_client(app)


async def test_a_held_invocation_wakes_the_model_once_and_is_answered_by_the_new_replica(
    aiohttp_client: ClientFactory, encoder_factory: EncoderFactory
) -> None:
    encoder = await encoder_factory("woken")
    catalog = Catalog(pod_address_annotation=ANNOTATION)
    catalog.upsert_model(scale_to_zero_model(replicas=0))
    scaler = RecordingScaler()
    client = await gateway(aiohttp_client, catalog, scaler)

    # Listed to CVAT while asleep.
    assert SAM_FUNCTION in await (await client.get("/api/functions")).json()
    body = invocation_body(b"frame-1")
    first = asyncio.create_task(client.post("/api/function_invocations", data=body, headers=HEADERS))
    second = asyncio.create_task(client.post("/api/function_invocations", data=body, headers=HEADERS))
    await asyncio.sleep(0.5)
    assert not first.done() and not second.done(), "held while no replica is ready"
    assert await metric(client, "sam_gateway_held_invocations", {"function": SAM_FUNCTION}) == 2
    # The replica the wake asked for becomes Ready.
    catalog.upsert_pod(pod("enc-0", annotations={ANNOTATION: encoder.address}))
    for task in (first, second):
        response = await task
        assert response.status == 200
        assert response.headers["X-Encoder-Replica"] == "woken"
    assert scaler.scaled == [("models", "vit-h", 1)], "one wake for any number of held invocations"
    assert [reason for reason, _ in scaler.events] == ["WokenUp"]
    assert (
        await metric(client, "sam_gateway_wakes_total", {"function": SAM_FUNCTION, "reason": "dashboard_invocation"})
        == 1
    )
    assert await metric(client, "sam_gateway_held_invocations", {"function": SAM_FUNCTION}) == 0
    assert await metric(client, "sam_gateway_wake_duration_seconds_count", {"function": SAM_FUNCTION}) == 1
    assert len(encoder.received) == 2


async def test_a_wake_that_takes_too_long_is_a_503_with_retry_after(aiohttp_client: ClientFactory) -> None:
    catalog = Catalog(pod_address_annotation=ANNOTATION)
    catalog.upsert_model(scale_to_zero_model(replicas=0))
    client = await gateway(aiohttp_client, catalog, RecordingScaler())
    response = await client.post("/api/function_invocations", data=invocation_body(b"x"), headers=HEADERS)
    assert response.status == 503
    assert int(response.headers["Retry-After"]) > 0
    assert "waking up from zero replicas" in (await response.json())["error"]


async def test_keda_models_are_held_but_scaled_by_keda(aiohttp_client: ClientFactory) -> None:
    catalog = Catalog(pod_address_annotation=ANNOTATION)
    catalog.upsert_model(scale_to_zero_model(replicas=0, provider="keda"))
    scaler = RecordingScaler()
    client = await gateway(aiohttp_client, catalog, scaler)
    response = await client.post("/api/function_invocations", data=invocation_body(b"x"), headers=HEADERS)
    assert response.status == 503
    assert scaler.scaled == [] and [r for r, _ in scaler.events] == ["WokenUp"]


async def test_a_model_without_scale_to_zero_gets_the_immediate_503(aiohttp_client: ClientFactory) -> None:
    catalog = Catalog(pod_address_annotation=ANNOTATION)
    catalog.upsert_model(scale_to_zero_model(replicas=1, min_replicas=1))
    scaler = RecordingScaler()
    client = await gateway(aiohttp_client, catalog, scaler)
    response = await client.post("/api/function_invocations", data=invocation_body(b"x"), headers=HEADERS)
    assert response.status == 503 and "Retry-After" not in response.headers
    assert "no ready replica" in (await response.json())["error"]
    assert scaler.scaled == []


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def metrics_text(invocations: int) -> str:
    return (
        "# TYPE sam_inference_requests_total counter\n"
        f'sam_inference_requests_total{{endpoint="invoke",code="200"}} {invocations}\n'
        'sam_inference_requests_total{endpoint="readyz",code="200"} 999\n'
    )


def sleeper(catalog: Catalog, scaler: RecordingScaler, counts: dict[str, int], clock: FakeClock) -> Activator:
    async def fetch(replica: str) -> str:
        return metrics_text(counts[replica])

    return Activator(catalog, GatewayMetrics(catalog), scaler, fetch, clock=clock)


async def test_an_idle_model_sleeps_after_its_quiet_period() -> None:
    catalog = Catalog(pod_address_annotation=ANNOTATION)
    catalog.upsert_model(scale_to_zero_model(replicas=1, quiet=60))
    catalog.upsert_pod(pod("enc-0", annotations={ANNOTATION: "127.0.0.1:1"}))
    scaler, clock, counts = RecordingScaler(), FakeClock(), {"127.0.0.1:1": 7}
    activator = sleeper(catalog, scaler, counts, clock)
    assert await activator.put_idle_models_to_sleep() == []  # first look: only the count
    clock.now += 30
    assert await activator.put_idle_models_to_sleep() == []  # inside the quiet period
    clock.now += 31
    assert await activator.put_idle_models_to_sleep() == [SAM_FUNCTION]
    assert scaler.scaled == [("models", "vit-h", 0)]
    assert scaler.events[0][0] == "ScaledToZero" and "quiet period 60 s" in scaler.events[0][1]


async def test_work_seen_on_the_replicas_restarts_the_quiet_period() -> None:
    """Another gateway replica (or a direct client) keeps the model busy: its requests show on the encoder."""
    catalog = Catalog(pod_address_annotation=ANNOTATION)
    catalog.upsert_model(scale_to_zero_model(replicas=1, quiet=60))
    catalog.upsert_pod(pod("enc-0", annotations={ANNOTATION: "127.0.0.1:1"}))
    scaler, clock, counts = RecordingScaler(), FakeClock(), {"127.0.0.1:1": 7}
    activator = sleeper(catalog, scaler, counts, clock)
    await activator.put_idle_models_to_sleep()
    clock.now += 61
    counts["127.0.0.1:1"] = 9  # someone else's invocations
    assert await activator.put_idle_models_to_sleep() == []
    clock.now += 59
    assert await activator.put_idle_models_to_sleep() == []  # quiet again, but only for 59 s
    clock.now += 2
    assert await activator.put_idle_models_to_sleep() == [SAM_FUNCTION]


async def test_the_quiet_period_counts_from_the_first_ready_replica() -> None:
    """A model still loading its checkpoint is not idle: it must not go back to sleep before it could serve."""
    catalog = Catalog(pod_address_annotation=ANNOTATION)
    catalog.upsert_model(scale_to_zero_model(replicas=1, quiet=60))
    scaler, clock, counts = RecordingScaler(), FakeClock(), {"127.0.0.1:1": 0}
    activator = sleeper(catalog, scaler, counts, clock)
    for _ in range(3):  # three minutes of loading, no ready replica
        await activator.put_idle_models_to_sleep()
        clock.now += 60
    assert scaler.scaled == []
    catalog.upsert_pod(pod("enc-0", annotations={ANNOTATION: "127.0.0.1:1"}))
    assert await activator.put_idle_models_to_sleep() == []
    clock.now += 59
    assert await activator.put_idle_models_to_sleep() == []
    clock.now += 2
    assert await activator.put_idle_models_to_sleep() == [SAM_FUNCTION]


async def test_an_invocation_in_flight_keeps_the_model_awake_past_its_quiet_period() -> None:
    """A big model's first encode on a CPU can outlast the quiet period: it is not idleness, and the quiet period
    counts from the end of the last invocation."""
    catalog = Catalog(pod_address_annotation=ANNOTATION)
    catalog.upsert_model(scale_to_zero_model(replicas=1, quiet=10))
    catalog.upsert_pod(pod("enc-0", annotations={ANNOTATION: "127.0.0.1:1"}))
    (function,) = catalog.functions()
    scaler, clock, counts = RecordingScaler(), FakeClock(), {"127.0.0.1:1": 7}
    activator = sleeper(catalog, scaler, counts, clock)
    await activator.put_idle_models_to_sleep()
    activator.invocation_started(function)
    for _ in range(6):  # a minute of encoding; the encoder's counter moves only when the answer is out
        clock.now += 10
        assert await activator.put_idle_models_to_sleep() == []
    activator.invocation_finished(function)
    clock.now += 9
    assert await activator.put_idle_models_to_sleep() == []
    clock.now += 2
    assert await activator.put_idle_models_to_sleep() == [SAM_FUNCTION]
    assert scaler.scaled == [("models", "vit-h", 0)]


async def test_only_hpa_scale_to_zero_models_that_are_awake_are_put_to_sleep() -> None:
    catalog = Catalog(pod_address_annotation=ANNOTATION)
    scaler, clock = RecordingScaler(), FakeClock()
    activator = sleeper(catalog, scaler, {}, clock)
    for body in (
        scale_to_zero_model(replicas=1, min_replicas=1),  # never sleeps
        scale_to_zero_model(replicas=1, provider="keda"),  # KEDA's idle mode sleeps it
        scale_to_zero_model(replicas=0),  # already asleep
    ):
        catalog.upsert_model(body)
        await activator.put_idle_models_to_sleep()
        clock.now += 10_000
        assert await activator.put_idle_models_to_sleep() == []
    assert scaler.scaled == []


def test_work_requests_counts_only_work_endpoints() -> None:
    assert work_requests(metrics_text(5)) == 5
