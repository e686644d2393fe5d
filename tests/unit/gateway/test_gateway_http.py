"""The gateway over real loopback HTTP: discovery, dashboard and direct invocation, failures, auth, metrics.

Upstreams are small fake encoder servers (the HTTP layer is under test, not the model).
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sam_gateway.app import create_app, notify_changed
from sam_gateway.catalog import Catalog
from sam_gateway.settings import GatewaySettings
from sam_gateway.state import DIRECT
from unit.gateway.gateway_samples import (
    SAM_ANNOTATIONS,
    SAM_FUNCTION,
    EncoderFactory,
    free_port,
    image_routed_to,
    invocation_body,
    metric,
    pod,
    sammodel,
)

CVAT_HEADERS = {
    "x-nuclio-project-name": "cvat",
    "x-nuclio-function-namespace": "nuclio",
    "x-nuclio-invoke-via": "domain-name",
    "X-Nuclio-Invoke-Timeout": "120s",
    "User-Agent": "CVAT/2.73.0 python-requests/2.32.3",
}
ANNOTATION = "samoperator.io/test-address"

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


def _settings(**overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "direct_host": "127.0.0.1",
        "pod_address_annotation": ANNOTATION,
        "direct_enabled": False,
        "upstream_timeout_s": 5.0,
        "connect_timeout_s": 1.0,
    }
    values.update(overrides)
    return GatewaySettings(**values)


def _catalog(replicas: list[str], **model: Any) -> Catalog:
    catalog = Catalog(pod_address_annotation=ANNOTATION)
    catalog.upsert_model(sammodel(**model))
    for i, address in enumerate(replicas):
        catalog.upsert_pod(pod(f"enc-{i}", ip=f"10.9.0.{i + 1}", annotations={ANNOTATION: address}))
    return catalog


def _dead_address() -> str:
    return f"127.0.0.1:{free_port()}"


def _invoke_headers(function: str = SAM_FUNCTION) -> dict[str, str]:
    return {
        **CVAT_HEADERS,
        "x-nuclio-function-name": function,
        "x-nuclio-path": "/",
        "Content-Type": "application/json",
    }


async def _requests(client: TestClient[Any, Any], mode: str, code: str) -> float:
    """``sam_gateway_requests_total`` of the sample function."""
    return await metric(client, "sam_gateway_requests_total", {"function": SAM_FUNCTION, "mode": mode, "code": code})


async def _gateway(aiohttp_client: ClientFactory, catalog: Catalog, **settings: Any) -> TestClient[Any, Any]:
    app = create_app(_settings(**settings), catalog)
    return await aiohttp_client(app)


# ------------------------------------------------------------------- discovery
async def test_list_functions_returns_an_object_keyed_by_function_name(aiohttp_client: ClientFactory) -> None:
    catalog = _catalog(["127.0.0.1:1"])
    catalog.upsert_model(sammodel("masks", function_name="sam-vit-b-masks", mode="masks", http_port=32769))
    catalog.upsert_model(sammodel("down", function_name="not-ready", ready=False))
    client = await _gateway(aiohttp_client, catalog)

    resp = await client.get("/api/functions", headers=CVAT_HEADERS)
    assert resp.status == 200
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert sorted(body) == [SAM_FUNCTION, "sam-vit-b-masks"]
    sam = body[SAM_FUNCTION]
    assert sam["metadata"]["name"] == SAM_FUNCTION
    assert sam["metadata"]["labels"]["nuclio.io/project-name"] == "cvat"
    assert sam["metadata"]["annotations"] == SAM_ANNOTATIONS
    assert sam["spec"]["description"]
    assert sam["status"]["state"] == "ready"
    assert sam["status"]["httpPort"] == 32768
    assert body["sam-vit-b-masks"]["status"]["httpPort"] == 32769


async def test_get_function_returns_the_inner_object(aiohttp_client: ClientFactory) -> None:
    client = await _gateway(aiohttp_client, _catalog([]))
    listed = await (await client.get("/api/functions")).json()
    resp = await client.get(f"/api/functions/{SAM_FUNCTION}", headers=CVAT_HEADERS)
    assert resp.status == 200
    assert await resp.json() == listed[SAM_FUNCTION]


async def test_unknown_function_is_404_function_not_found(aiohttp_client: ClientFactory) -> None:
    client = await _gateway(aiohttp_client, _catalog([]))
    resp = await client.get("/api/functions/nope", headers=CVAT_HEADERS)
    assert resp.status == 404
    assert await resp.json() == {"error": "Function not found"}


async def test_other_project_sees_no_functions(aiohttp_client: ClientFactory) -> None:
    client = await _gateway(aiohttp_client, _catalog([]))
    resp = await client.get("/api/functions", headers={"x-nuclio-project-name": "someone-else"})
    assert resp.status == 200
    assert await resp.json() == {}
    unfiltered = await (await client.get("/api/functions")).json()
    assert list(unfiltered) == [SAM_FUNCTION]


async def test_namespace_header_is_ignored_unless_strict(aiohttp_client: ClientFactory) -> None:
    lenient = await _gateway(aiohttp_client, _catalog([]))
    assert list(await (await lenient.get("/api/functions", headers=CVAT_HEADERS)).json()) == [SAM_FUNCTION]

    strict = await _gateway(aiohttp_client, _catalog([]), strict_namespace=True)
    assert await (await strict.get("/api/functions", headers=CVAT_HEADERS)).json() == {}
    assert (await strict.get(f"/api/functions/{SAM_FUNCTION}", headers=CVAT_HEADERS)).status == 404
    models_ns = {**CVAT_HEADERS, "x-nuclio-function-namespace": "models"}
    assert list(await (await strict.get("/api/functions", headers=models_ns)).json()) == [SAM_FUNCTION]


async def test_function_appears_and_disappears_with_model_readiness(aiohttp_client: ClientFactory) -> None:
    catalog = _catalog([])
    client = await _gateway(aiohttp_client, catalog)
    catalog.upsert_model(sammodel(ready=False))
    assert await (await client.get("/api/functions")).json() == {}
    assert (await client.get(f"/api/functions/{SAM_FUNCTION}")).status == 404
    catalog.upsert_model(sammodel())
    assert list(await (await client.get("/api/functions")).json()) == [SAM_FUNCTION]


# ------------------------------------------------------------------ invocation
async def test_dashboard_invocation_is_proxied_to_a_replica(
    aiohttp_client: ClientFactory, encoder_factory: EncoderFactory
) -> None:
    encoder = await encoder_factory("enc-a")
    client = await _gateway(aiohttp_client, _catalog([encoder.address]))
    body = invocation_body(b"frame-1")

    resp = await client.post("/api/function_invocations", data=body, headers=_invoke_headers())
    assert resp.status == 200
    assert await resp.json() == {"blob": "ZW5jLWE="}
    [received] = encoder.received
    assert received["body"] == body
    assert received["path"] == "/"
    assert received["headers"]["Content-Type"] == "application/json"


async def test_nuclio_headers_are_stripped_both_ways(
    aiohttp_client: ClientFactory, encoder_factory: EncoderFactory
) -> None:
    encoder = await encoder_factory("enc-a")
    client = await _gateway(aiohttp_client, _catalog([encoder.address]), token="s3cret")
    headers = {**_invoke_headers(), "Authorization": "Bearer s3cret", "X-Request-Id": "abc"}

    resp = await client.post("/api/function_invocations", data=invocation_body(b"x"), headers=headers)
    assert resp.status == 200
    # Upstream X-Nuclio-* headers do not reach CVAT; other headers do.
    assert "X-Nuclio-Logs" not in resp.headers
    assert resp.headers["X-Encoder-Replica"] == "enc-a"
    assert resp.headers["X-Cache"] == "miss"
    assert resp.headers["X-Sam-Gateway-Replica"] == encoder.address
    # CVAT's X-Nuclio-* headers and the gateway token do not reach the encoder.
    sent = {k.lower() for k in encoder.received[0]["headers"]}
    assert not {h for h in sent if h.startswith("x-nuclio")}
    assert "authorization" not in sent
    assert "x-request-id" in sent


async def test_x_nuclio_path_is_forwarded(aiohttp_client: ClientFactory, encoder_factory: EncoderFactory) -> None:
    encoder = await encoder_factory("enc-a")
    client = await _gateway(aiohttp_client, _catalog([encoder.address]))
    headers = {**_invoke_headers(), "x-nuclio-path": "v1/segment"}
    assert (await client.post("/api/function_invocations", data=b"{}", headers=headers)).status == 200
    assert encoder.received[0]["path"] == "/v1/segment"


async def test_invocation_without_function_name_is_400(aiohttp_client: ClientFactory) -> None:
    client = await _gateway(aiohttp_client, _catalog([]))
    resp = await client.post("/api/function_invocations", data=b"{}", headers=CVAT_HEADERS)
    assert resp.status == 400
    assert await resp.json() == {"error": "Function name must be provided"}


async def test_invocation_of_unknown_function_is_404(aiohttp_client: ClientFactory) -> None:
    client = await _gateway(aiohttp_client, _catalog([]))
    resp = await client.post("/api/function_invocations", data=b"{}", headers=_invoke_headers("nope"))
    assert resp.status == 404
    assert await resp.json() == {"error": "Function not found"}


async def test_same_image_always_lands_on_the_same_replica(
    aiohttp_client: ClientFactory, encoder_factory: EncoderFactory
) -> None:
    encoders = [await encoder_factory(f"enc-{i}") for i in range(3)]
    client = await _gateway(aiohttp_client, _catalog([e.address for e in encoders]))
    images = [f"img-{i}".encode() for i in range(12)]
    first: dict[bytes, str] = {}
    for _round in range(2):
        for image in images:
            resp = await client.post(
                "/api/function_invocations", data=invocation_body(image), headers=_invoke_headers()
            )
            replica = resp.headers["X-Encoder-Replica"]
            assert first.setdefault(image, replica) == replica
    # Twelve images spread over more than one replica.
    assert len(set(first.values())) > 1


async def test_connection_refused_retries_the_next_replica(
    aiohttp_client: ClientFactory, encoder_factory: EncoderFactory
) -> None:
    live = await encoder_factory("live")
    dead = _dead_address()
    replicas = [dead, live.address]
    client = await _gateway(aiohttp_client, _catalog(replicas))
    image = image_routed_to(dead, replicas)

    resp = await client.post("/api/function_invocations", data=invocation_body(image), headers=_invoke_headers())
    assert resp.status == 200
    assert resp.headers["X-Encoder-Replica"] == "live"
    labels = {"function": SAM_FUNCTION}
    assert await metric(client, "sam_gateway_routing_decisions_total", {**labels, "outcome": "primary"}) == 1
    assert await metric(client, "sam_gateway_routing_decisions_total", {**labels, "outcome": "retry"}) == 1
    assert await metric(client, "sam_gateway_upstream_errors_total", {**labels, "reason": "connect"}) == 1


async def test_replica_dying_mid_request_is_retried_on_another(
    aiohttp_client: ClientFactory, encoder_factory: EncoderFactory
) -> None:
    dying = await encoder_factory("dying", behaviour="drop")
    live = await encoder_factory("live")
    replicas = [dying.address, live.address]
    client = await _gateway(aiohttp_client, _catalog(replicas))
    image = image_routed_to(dying.address, replicas)

    resp = await client.post("/api/function_invocations", data=invocation_body(image), headers=_invoke_headers())
    assert resp.status == 200
    assert resp.headers["X-Encoder-Replica"] == "live"
    assert len(dying.received) == 1
    labels = {"function": SAM_FUNCTION, "reason": "disconnect"}
    assert await metric(client, "sam_gateway_upstream_errors_total", labels) == 1


async def test_the_last_replica_disconnecting_is_tried_once_more(
    aiohttp_client: ClientFactory, encoder_factory: EncoderFactory
) -> None:
    # One replica (a model scaling up from 1): the server drops the connection as the first request arrives, as
    # when it closes a kept-alive connection the gateway reuses. One more try on it answers; a replica that keeps
    # dropping still gets only that one extra try.
    flaky = await encoder_factory("flaky", behaviour="drop-once")
    client = await _gateway(aiohttp_client, _catalog([flaky.address]))
    resp = await client.post("/api/function_invocations", data=invocation_body(b"a"), headers=_invoke_headers())
    assert resp.status == 200
    assert resp.headers["X-Encoder-Replica"] == "flaky"
    assert len(flaky.received) == 2
    labels = {"function": SAM_FUNCTION}
    assert await metric(client, "sam_gateway_routing_decisions_total", {**labels, "outcome": "retry"}) == 1

    dying = await encoder_factory("dying", behaviour="drop")
    client = await _gateway(aiohttp_client, _catalog([dying.address]))
    resp = await client.post("/api/function_invocations", data=invocation_body(b"b"), headers=_invoke_headers())
    assert resp.status == 503
    assert "every replica" in (await resp.json())["error"]
    assert len(dying.received) == 2


async def test_all_replicas_dead_is_a_fast_503(aiohttp_client: ClientFactory) -> None:
    client = await _gateway(aiohttp_client, _catalog([_dead_address(), _dead_address()]))
    started = time.monotonic()
    resp = await client.post("/api/function_invocations", data=invocation_body(b"x"), headers=_invoke_headers())
    assert resp.status == 503
    assert time.monotonic() - started < 3
    error = (await resp.json())["error"]
    assert error.startswith("Failed to invoke function")
    assert await _requests(client, "dashboard", "503") == 1


async def test_no_ready_replica_is_a_503_and_counted(aiohttp_client: ClientFactory) -> None:
    client = await _gateway(aiohttp_client, _catalog([]))
    resp = await client.post("/api/function_invocations", data=invocation_body(b"x"), headers=_invoke_headers())
    assert resp.status == 503
    assert "no ready replica" in (await resp.json())["error"]
    labels = {"function": SAM_FUNCTION, "outcome": "no_replica"}
    assert await metric(client, "sam_gateway_routing_decisions_total", labels) == 1


async def test_slow_upstream_is_a_504_within_the_configured_timeout(
    aiohttp_client: ClientFactory, encoder_factory: EncoderFactory
) -> None:
    slow = await encoder_factory("slow", behaviour="slow")
    client = await _gateway(aiohttp_client, _catalog([slow.address]), upstream_timeout_s=0.5)
    started = time.monotonic()
    resp = await client.post("/api/function_invocations", data=invocation_body(b"x"), headers=_invoke_headers())
    elapsed = time.monotonic() - started
    assert resp.status == 504
    assert 0.4 < elapsed < 3
    assert "did not answer" in (await resp.json())["error"]
    labels = {"function": SAM_FUNCTION, "reason": "timeout"}
    assert await metric(client, "sam_gateway_upstream_errors_total", labels) == 1


@pytest.mark.parametrize("code", [400, 413, 429, 500])
async def test_upstream_error_status_and_body_pass_through_unchanged(
    aiohttp_client: ClientFactory, encoder_factory: EncoderFactory, code: int
) -> None:
    encoder = await encoder_factory("enc", behaviour=f"status:{code}")
    other = await encoder_factory("other")
    client = await _gateway(aiohttp_client, _catalog([encoder.address, other.address]))
    image = image_routed_to(encoder.address, [encoder.address, other.address])
    resp = await client.post("/api/function_invocations", data=invocation_body(image), headers=_invoke_headers())
    assert resp.status == code
    assert await resp.json() == {"error": f"enc says {code}"}
    assert other.received == []  # an HTTP answer is not a connection failure: no retry


# ------------------------------------------------------------------ direct mode
async def _wait_for(predicate: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_direct_port_opens_serves_and_closes_with_the_function(
    aiohttp_client: ClientFactory, encoder_factory: EncoderFactory
) -> None:
    encoder = await encoder_factory("enc-direct")
    port = free_port()
    catalog = Catalog(pod_address_annotation=ANNOTATION)
    catalog.upsert_pod(pod("enc-0", annotations={ANNOTATION: encoder.address}))
    client = await _gateway(aiohttp_client, catalog, direct_enabled=True)
    app = client.app
    assert app is not None

    catalog.upsert_model(sammodel(http_port=port))
    notify_changed(app)
    await _wait_for(lambda: port in app[DIRECT].open_ports)

    body = invocation_body(b"direct")
    async with aiohttp.ClientSession() as session:
        # CVAT direct mode: bare JSON body, User-Agent, no Nuclio headers.
        async with session.post(
            f"http://127.0.0.1:{port}/",
            data=body,
            headers={"Content-Type": "application/json", "User-Agent": "CVAT/2.73.0"},
        ) as resp:
            assert resp.status == 200
            assert await resp.json() == {"blob": "ZW5jLWRpcmVjdA=="}
        assert encoder.received[0]["body"] == body
        assert await _requests(client, "direct", "200") == 1

        catalog.upsert_model(sammodel(ready=False, http_port=port))
        notify_changed(app)
        await _wait_for(lambda: port not in app[DIRECT].open_ports)
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.post(f"http://127.0.0.1:{port}/", data=body)


async def test_direct_port_follows_a_port_change_and_stops_on_shutdown(
    aiohttp_client: ClientFactory,
) -> None:
    first, second = free_port(), free_port()
    catalog = Catalog()
    catalog.upsert_model(sammodel(http_port=first))
    client = await _gateway(aiohttp_client, catalog, direct_enabled=True)
    app = client.app
    assert app is not None
    await _wait_for(lambda: app[DIRECT].open_ports == {first})
    catalog.upsert_model(sammodel(http_port=second))
    notify_changed(app)
    await _wait_for(lambda: app[DIRECT].open_ports == {second})
    await client.close()
    assert app[DIRECT].open_ports == set()


async def test_direct_port_already_in_use_is_reported_and_retried(aiohttp_client: ClientFactory) -> None:
    blocker = web.Application()
    runner = web.AppRunner(blocker)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    catalog = Catalog()
    catalog.upsert_model(sammodel(http_port=port))
    client = await _gateway(aiohttp_client, catalog, direct_enabled=True)
    app = client.app
    assert app is not None
    await _wait_for(lambda: port in app[DIRECT].failed)
    await runner.cleanup()
    # The next sync (any catalog change, or the periodic retry) binds it.
    notify_changed(app)
    await _wait_for(lambda: port in app[DIRECT].open_ports)


# ------------------------------------------------------------ auth and health
async def test_token_guards_api_but_not_health_or_metrics(aiohttp_client: ClientFactory) -> None:
    catalog = _catalog([])
    catalog.mark_synced("sammodels")
    catalog.mark_synced("pods")
    client = await _gateway(aiohttp_client, catalog, token="s3cret")
    assert (await client.get("/api/functions")).status == 401
    assert (await client.get("/api/functions", headers={"Authorization": "Bearer wrong"})).status == 401
    resp = await client.post("/api/function_invocations", data=b"{}", headers=_invoke_headers())
    assert resp.status == 401
    assert await resp.json() == {"error": "Unauthorized"}
    ok = await client.get("/api/functions", headers={"Authorization": "Bearer s3cret"})
    assert ok.status == 200
    assert list(await ok.json()) == [SAM_FUNCTION]
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await client.get(path)).status == 200, path


async def test_readyz_waits_for_the_initial_list(aiohttp_client: ClientFactory) -> None:
    catalog = Catalog()
    client = await _gateway(aiohttp_client, catalog)
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 503
    catalog.mark_synced("sammodels")
    assert (await client.get("/readyz")).status == 503
    catalog.mark_synced("pods")
    assert (await client.get("/readyz")).status == 200


async def test_metrics_use_the_contract_names(aiohttp_client: ClientFactory, encoder_factory: EncoderFactory) -> None:
    encoders = [await encoder_factory("a"), await encoder_factory("b")]
    client = await _gateway(aiohttp_client, _catalog([e.address for e in encoders]))
    await client.post("/api/function_invocations", data=invocation_body(b"m"), headers=_invoke_headers())

    text = await (await client.get("/metrics")).text()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {
        "sam_gateway_requests",
        "sam_gateway_request_duration_seconds",
        "sam_gateway_upstream_duration_seconds",
        "sam_gateway_upstream_errors",
        "sam_gateway_routing_decisions",
        "sam_gateway_functions",
        "sam_gateway_replicas",
    } <= names
    fn = {"function": SAM_FUNCTION}
    assert await metric(client, "sam_gateway_requests_total", {**fn, "mode": "dashboard", "code": "200"}) == 1
    assert await metric(client, "sam_gateway_request_duration_seconds_count", fn) == 1
    assert await metric(client, "sam_gateway_upstream_duration_seconds_count", fn) == 1
    assert await metric(client, "sam_gateway_functions", {}) == 1
    assert await metric(client, "sam_gateway_replicas", fn) == 2


async def test_large_body_is_accepted_and_forwarded_intact(
    aiohttp_client: ClientFactory, encoder_factory: EncoderFactory
) -> None:
    encoder = await encoder_factory("big")
    client = await _gateway(aiohttp_client, _catalog([encoder.address]))
    # CVAT needs at least 32 MB bodies (cvat-protocol §8 A.5): 24 MiB of image is 32 MiB of base64.
    body = invocation_body(bytes(range(256)) * (24 * 1024 * 4))
    resp = await client.post("/api/function_invocations", data=io.BytesIO(body), headers=_invoke_headers())
    assert resp.status == 200
    [received] = encoder.received
    assert received["body"] == body
    assert received["headers"]["Content-Length"] == str(len(body))
