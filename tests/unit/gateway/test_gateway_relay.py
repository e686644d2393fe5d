"""How the gateway hands a replica's answer to CVAT. By default every answer is read whole first, so a replica
breaking off mid-answer is replayed on the next one; with ``relay_min_bytes`` a large one (an embedding's 5.6 MB)
is relayed as it arrives and a small one is read whole first; what a replica breaking off does in each case."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from sam_gateway.app import create_app
from sam_gateway.catalog import Catalog
from sam_gateway.proxy import STREAM_MIN_BYTES
from sam_gateway.settings import GatewaySettings
from unit.gateway.gateway_samples import (
    SAM_FUNCTION,
    EncoderFactory,
    image_routed_to,
    invocation_body,
    metric,
    pod,
    sammodel,
)

ANNOTATION = "samoperator.io/test-address"
EMBEDDING_ANSWER = 5_592_420  # {"blob": <base64 of float32[1,256,64,64]>}
HEADERS = {
    "x-nuclio-function-name": SAM_FUNCTION,
    "x-nuclio-path": "/",
    "x-nuclio-project-name": "cvat",
    "Content-Type": "application/json",
}
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


async def _gateway(
    aiohttp_client: ClientFactory,
    replicas: list[str],
    upstream_timeout_s: float = 5.0,
    relay_min_bytes: int = STREAM_MIN_BYTES,
) -> TestClient[Any, Any]:
    settings = GatewaySettings(
        host="127.0.0.1",
        pod_address_annotation=ANNOTATION,
        direct_enabled=False,
        upstream_timeout_s=upstream_timeout_s,
        relay_min_bytes=relay_min_bytes,
    )
    catalog = Catalog(pod_address_annotation=ANNOTATION)
    catalog.upsert_model(sammodel())
    for i, address in enumerate(replicas):
        catalog.upsert_pod(pod(f"enc-{i}", ip=f"10.9.0.{i + 1}", annotations={ANNOTATION: address}))
    return await aiohttp_client(create_app(settings, catalog))


async def test_an_embedding_sized_answer_arrives_whole_with_its_length(
    aiohttp_client: ClientFactory, encoder_factory: EncoderFactory
) -> None:
    encoder = await encoder_factory("big", answer_bytes=EMBEDDING_ANSWER)
    client = await _gateway(aiohttp_client, [encoder.address])
    for _ in range(3):  # over one kept-alive connection, as CVAT's requests.Session
        resp = await client.post("/api/function_invocations", data=invocation_body(b"f"), headers=HEADERS)
        body = await resp.read()
        assert resp.status == 200
        assert len(body) == int(resp.headers["Content-Length"]) >= STREAM_MIN_BYTES
        assert "Transfer-Encoding" not in resp.headers
        assert "X-Nuclio-Logs" not in resp.headers  # stripped like the Nuclio dashboard does
        assert resp.headers["X-Encoder-Replica"] == "big"
        assert resp.headers["Content-Type"].startswith("application/json")
        blob = json.loads(body)["blob"]
        assert blob.startswith("Ymln") and len(blob) > EMBEDDING_ANSWER - 20
    assert await metric(client, "sam_gateway_requests_total", {"function": SAM_FUNCTION, "code": "200"}) == 3


async def test_a_replica_cutting_a_large_answer_short_cuts_the_client_off(
    aiohttp_client: ClientFactory, encoder_factory: EncoderFactory
) -> None:
    # The status line is already out when the replica breaks off: no replay, the client sees a short body.
    cutting = await encoder_factory("cutting", behaviour="cut", answer_bytes=EMBEDDING_ANSWER)
    live = await encoder_factory("live", answer_bytes=EMBEDDING_ANSWER)
    replicas = [cutting.address, live.address]
    client = await _gateway(aiohttp_client, replicas)
    image = image_routed_to(cutting.address, replicas)
    resp = await client.post("/api/function_invocations", data=invocation_body(image), headers=HEADERS)
    assert resp.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
    assert len(live.received) == 0
    labels = {"function": SAM_FUNCTION, "reason": "disconnect"}
    assert await metric(client, "sam_gateway_upstream_errors_total", labels) == 1
    # The gateway itself goes on serving.
    other = image_routed_to(live.address, replicas)
    resp = await client.post("/api/function_invocations", data=invocation_body(other), headers=HEADERS)
    assert resp.status == 200 and len(await resp.read()) > EMBEDDING_ANSWER - 20


async def test_a_replica_stalling_mid_answer_is_cut_off_at_the_deadline(
    aiohttp_client: ClientFactory, encoder_factory: EncoderFactory
) -> None:
    stalling = await encoder_factory("stalling", behaviour="stall", answer_bytes=EMBEDDING_ANSWER)
    client = await _gateway(aiohttp_client, [stalling.address], upstream_timeout_s=1.0)
    started = time.monotonic()
    resp = await client.post("/api/function_invocations", data=invocation_body(b"f"), headers=HEADERS)
    assert resp.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
    assert time.monotonic() - started < 5  # the gateway's deadline, not the replica's 10 s stall
    labels = {"function": SAM_FUNCTION, "reason": "timeout"}
    assert await metric(client, "sam_gateway_upstream_errors_total", labels) == 1


async def test_a_replica_cutting_a_small_answer_short_is_replayed_on_the_next(
    aiohttp_client: ClientFactory, encoder_factory: EncoderFactory
) -> None:
    cutting = await encoder_factory("cutting", behaviour="cut", answer_bytes=4096)
    live = await encoder_factory("live", answer_bytes=4096)
    replicas = [cutting.address, live.address]
    client = await _gateway(aiohttp_client, replicas)
    image = image_routed_to(cutting.address, replicas)
    resp = await client.post("/api/function_invocations", data=invocation_body(image), headers=HEADERS)
    assert resp.status == 200
    assert resp.headers["X-Encoder-Replica"] == "live"
    assert len(json.loads(await resp.read())["blob"]) > 4000
    assert len(cutting.received) == 1 and len(live.received) == 1
    labels = {"function": SAM_FUNCTION, "reason": "disconnect"}
    assert await metric(client, "sam_gateway_upstream_errors_total", labels) == 1


async def test_a_client_leaving_mid_answer_leaves_the_gateway_serving(
    aiohttp_client: ClientFactory, encoder_factory: EncoderFactory
) -> None:
    encoder = await encoder_factory("big", answer_bytes=EMBEDDING_ANSWER)
    client = await _gateway(aiohttp_client, [encoder.address])
    url = client.make_url("/api/function_invocations")
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=invocation_body(b"f"), headers=HEADERS) as resp,
    ):
        await resp.content.read(1024)
        resp.close()  # hang up with megabytes still to come
    resp = await client.post("/api/function_invocations", data=invocation_body(b"g"), headers=HEADERS)
    assert resp.status == 200 and len(await resp.read()) > EMBEDDING_ANSWER - 20
    assert len(encoder.received) == 2


async def test_by_default_a_replica_cutting_a_large_answer_short_is_replayed_on_the_next(
    aiohttp_client: ClientFactory, encoder_factory: EncoderFactory
) -> None:
    # The default (relay_min_bytes 0) reads every answer whole before the status line goes out: no lost request.
    assert GatewaySettings(host="127.0.0.1").relay_min_bytes == 0
    cutting = await encoder_factory("cutting", behaviour="cut", answer_bytes=EMBEDDING_ANSWER)
    live = await encoder_factory("live", answer_bytes=EMBEDDING_ANSWER)
    replicas = [cutting.address, live.address]
    client = await _gateway(aiohttp_client, replicas, relay_min_bytes=0)
    image = image_routed_to(cutting.address, replicas)
    resp = await client.post("/api/function_invocations", data=invocation_body(image), headers=HEADERS)
    assert resp.status == 200
    assert resp.headers["X-Encoder-Replica"] == "live"
    body = await resp.read()
    assert len(body) == int(resp.headers["Content-Length"]) > EMBEDDING_ANSWER - 20
    assert len(cutting.received) == 1 and len(live.received) == 1
    labels = {"function": SAM_FUNCTION, "reason": "disconnect"}
    assert await metric(client, "sam_gateway_upstream_errors_total", labels) == 1
