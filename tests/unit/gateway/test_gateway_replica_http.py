"""The gateway's replica client (``sam_gateway.replica_http``) against real sockets on loopback: the answers it
parses and refuses, kept-alive connections reused and dropped, and what a malformed answer does to an invocation.

The scripted replica below answers with exact bytes, so each case is the wire, not a parser's idea of it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sam_gateway.app import create_app
from sam_gateway.catalog import Catalog
from sam_gateway.replica_http import (
    ConnectFailed,
    Disconnected,
    MalformedAnswer,
    ReplicaClient,
    parse_head,
    request_target,
)
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
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


def ok(body: bytes, *extra: str) -> bytes:
    head = "\r\n".join(("HTTP/1.1 200 OK", f"Content-Length: {len(body)}", "Content-Type: application/json", *extra))
    return head.encode() + b"\r\n\r\n" + body


class ScriptedReplica:
    """A loopback server that answers each request with the next scripted bytes; ``close_after`` closes the
    connection once they are written. Records every request and counts connections."""

    def __init__(self) -> None:
        self.script: list[tuple[bytes, bool]] = []
        self.requests: list[tuple[bytes, bytes]] = []
        self.connections = 0
        self.server: asyncio.Server | None = None

    def answer(self, data: bytes, close_after: bool = False) -> ScriptedReplica:
        self.script.append((data, close_after))
        return self

    @property
    def address(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def start(self) -> ScriptedReplica:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.script:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                data, close_after = self.script.pop(0)
                writer.write(data)
                await writer.drain()
                if close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[[], Awaitable[ScriptedReplica]]]:
    started: list[ScriptedReplica] = []

    async def start() -> ScriptedReplica:
        replica = await ScriptedReplica().start()
        started.append(replica)
        return replica

    yield start
    for replica in started:
        assert replica.server is not None
        replica.server.close()


async def call(client: ReplicaClient, replica: str, body: bytes = b"{}", **headers: str) -> tuple[int, bytes]:
    async with client.request(replica, "POST", "/", body, headers) as (head, connection):
        return head.status, bytes(await connection.read())


# ------------------------------------------------------------------------------------------------ parse_head
@pytest.mark.parametrize(
    ("head", "complaint"),
    [
        (b"FOO 200 OK", "status line"),
        (b"HTTP/1.1 20 OK", "status line"),
        (b"HTTP/2 200", "status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here", "header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length : 5", "header line"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", "chunked"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1", "Content-Length"),
    ],
)
def test_a_malformed_head_is_refused_with_what_is_wrong(head: bytes, complaint: str) -> None:
    with pytest.raises(MalformedAnswer, match=complaint):
        parse_head(head, "POST")


def test_a_head_gives_the_length_and_whether_the_connection_stays_open() -> None:
    kept = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nX-Cache: hit", "POST")
    assert (kept.status, kept.length, kept.keep_alive, kept.headers["x-cache"]) == (200, 12, True, "hit")
    repeated = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 7", "POST")
    assert repeated.length == 7
    assert not parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close", "POST").keep_alive
    assert not parse_head(b"HTTP/1.0 200 OK\r\nContent-Length: 3", "POST").keep_alive
    until_close = parse_head(b"HTTP/1.1 200 OK", "POST")
    assert (until_close.length, until_close.keep_alive) == (None, False)
    # Answers that have no body whatever their headers say.
    assert parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 10", "HEAD").length == 0
    assert parse_head(b"HTTP/1.1 204 No Content", "POST").length == 0
    assert parse_head(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10", "GET").length == 0


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("", "/"),
        ("/v1/embeddings?dtype=float16", "/v1/embeddings?dtype=float16"),
        ("/a b", "/a%20b"),
        ("/\u00e9", "/%C3%A9"),
        ("/%zz", "/%25zz"),
        ("/?q=1#frag", "/?q=1"),
        ("//evil.example/x", "/evil.example/x"),
        ("http://evil.example/", "/http://evil.example/"),
        ("a\r\nX-Injected: 1", "/aX-Injected:%201"),
    ],
)
def test_any_nuclio_path_becomes_a_request_target_on_the_replica(path: str, target: str) -> None:
    assert request_target("10.0.0.7:8080", path) == target


# ------------------------------------------------------------------------------------------ the client, on the wire
async def test_answers_arrive_whole_over_one_kept_alive_connection(
    scripted: Callable[[], Awaitable[ScriptedReplica]],
) -> None:
    big = bytes(range(256)) * 20_000  # 5 MB: many socket reads into one buffer
    replica = (await scripted()).answer(ok(b'{"a":1}')).answer(ok(big)).answer(ok(b""))
    client = ReplicaClient(connect_timeout_s=2)
    assert await call(client, replica.address, b'{"image":"x"}', Expect="100-continue") == (200, b'{"a":1}')
    assert await call(client, replica.address) == (200, big)
    assert await call(client, replica.address) == (200, b"")
    assert replica.connections == 1
    head, body = replica.requests[0]
    assert body == b'{"image":"x"}'
    assert b"Content-Length: 13\r\n" in head and b"Host: " + replica.address.encode() in head
    assert b"expect" not in head.lower()  # the body goes at once: no 100 Continue to wait for
    await client.close()


async def test_an_interim_100_continue_is_skipped(scripted: Callable[[], Awaitable[ScriptedReplica]]) -> None:
    replica = (await scripted()).answer(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"done"))
    assert await call(ReplicaClient(connect_timeout_s=2), replica.address) == (200, b"done")


async def test_a_kept_alive_connection_closed_as_the_request_went_out_is_retried_on_a_new_one(
    scripted: Callable[[], Awaitable[ScriptedReplica]],
) -> None:
    # The replica takes the second request on the kept-alive connection and closes it without a byte of answer
    # (its keep-alive ran out as the request arrived): the client tries once more, on a new connection.
    replica = (await scripted()).answer(ok(b"first")).answer(b"", close_after=True).answer(ok(b"second"))
    client = ReplicaClient(connect_timeout_s=2)
    assert await call(client, replica.address) == (200, b"first")
    assert await call(client, replica.address) == (200, b"second")
    assert replica.connections == 2 and len(replica.requests) == 3


async def test_a_connection_the_replica_closed_while_idle_is_not_reused(
    scripted: Callable[[], Awaitable[ScriptedReplica]],
) -> None:
    replica = (await scripted()).answer(ok(b"first"), close_after=True).answer(ok(b"second"))
    client = ReplicaClient(connect_timeout_s=2)
    assert await call(client, replica.address) == (200, b"first")
    await asyncio.sleep(0.05)  # the close reaches the pooled connection
    assert await call(client, replica.address) == (200, b"second")
    assert replica.connections == 2


async def test_a_connection_idle_past_the_timeout_is_closed_not_reused(
    scripted: Callable[[], Awaitable[ScriptedReplica]],
) -> None:
    # One answer more than asked for on each, so no connection is closed by the replica's side.
    replica = (await scripted()).answer(ok(b"one")).answer(ok(b"two")).answer(ok(b"three")).answer(ok(b"spare"))
    other = (await scripted()).answer(ok(b"elsewhere")).answer(ok(b"spare"))
    client = ReplicaClient(connect_timeout_s=2, idle_timeout_s=0.2)
    assert await call(client, replica.address) == (200, b"one")
    assert await call(client, replica.address) == (200, b"two")
    assert replica.connections == 1  # reused inside the timeout
    await asyncio.sleep(0.3)
    assert await call(client, replica.address) == (200, b"three")
    assert replica.connections == 2  # the idle one was dropped, a new one opened
    await asyncio.sleep(0.3)
    # A replica nobody asks for again (gone from the catalog) loses its idle connection at the next sweep.
    assert client.idle_connections(replica.address) == 1
    assert await call(client, other.address) == (200, b"elsewhere")
    assert client.idle_connections(replica.address) == 0
    assert client.idle_connections(other.address) == 1


async def test_connection_close_and_a_close_delimited_body_are_honoured(
    scripted: Callable[[], Awaitable[ScriptedReplica]],
) -> None:
    replica = await scripted()
    replica.answer(ok(b"closing", "Connection: close"))
    replica.answer(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", close_after=True)
    replica.answer(ok(b"third"))
    client = ReplicaClient(connect_timeout_s=2)
    assert await call(client, replica.address) == (200, b"closing")
    assert await call(client, replica.address) == (200, b"until the end")
    assert await call(client, replica.address) == (200, b"third")
    assert replica.connections == 3  # neither of the first two connections went back to the pool


async def test_a_close_delimited_body_longer_than_one_read_arrives_whole(
    scripted: Callable[[], Awaitable[ScriptedReplica]],
) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB: many reads into the growing buffer
    replica = (await scripted()).answer(b"HTTP/1.1 200 OK\r\n\r\n" + big, close_after=True)
    assert await call(ReplicaClient(connect_timeout_s=2), replica.address) == (200, big)


@pytest.mark.parametrize(
    ("answer", "complaint"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "status line"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "chunked"),
        (ok(b"x" * 100), "the most relayed: 64"),
        (ok(b"12345") + b"extra", "beyond the answer"),
    ],
)
async def test_an_answer_the_client_cannot_relay_is_refused_and_its_connection_dropped(
    scripted: Callable[[], Awaitable[ScriptedReplica]], answer: bytes, complaint: str
) -> None:
    replica = (await scripted()).answer(answer).answer(ok(b"after"))
    client = ReplicaClient(connect_timeout_s=2, max_answer_bytes=64)
    with pytest.raises(MalformedAnswer, match=complaint):
        await call(client, replica.address)
    assert await call(client, replica.address) == (200, b"after")
    assert replica.connections == 2


async def test_a_replica_breaking_off_says_whether_the_answer_had_started(
    scripted: Callable[[], Awaitable[ScriptedReplica]],
) -> None:
    replica = await scripted()
    replica.answer(b"", close_after=True)  # closes without a byte of the answer
    replica.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nten bytes.", close_after=True)
    client = ReplicaClient(connect_timeout_s=2)
    with pytest.raises(Disconnected, match="before the answer") as before:
        await call(client, replica.address)
    assert not before.value.answer_started
    with pytest.raises(Disconnected, match="during the answer") as during:
        await call(client, replica.address)
    assert during.value.answer_started


async def test_no_listener_is_a_connect_failure(scripted: Callable[[], Awaitable[ScriptedReplica]]) -> None:
    replica = await scripted()
    address = replica.address
    assert replica.server is not None
    replica.server.close()
    await replica.server.wait_closed()
    with pytest.raises(ConnectFailed):
        await call(ReplicaClient(connect_timeout_s=2), address)


# ------------------------------------------------------------------------------------------ through the gateway
async def test_a_malformed_answer_is_counted_and_the_next_replica_answers(
    aiohttp_client: ClientFactory,
    encoder_factory: EncoderFactory,
    scripted: Callable[[], Awaitable[ScriptedReplica]],
) -> None:
    broken = (await scripted()).answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    live = await encoder_factory("live")
    replicas = [broken.address, live.address]
    settings = GatewaySettings(host="127.0.0.1", pod_address_annotation=ANNOTATION, direct_enabled=False)
    catalog = Catalog(pod_address_annotation=ANNOTATION)
    catalog.upsert_model(sammodel())
    for i, address in enumerate(replicas):
        catalog.upsert_pod(pod(f"enc-{i}", ip=f"10.9.0.{i + 1}", annotations={ANNOTATION: address}))
    client = await aiohttp_client(create_app(settings, catalog))
    headers = {"x-nuclio-function-name": SAM_FUNCTION, "x-nuclio-path": "/", "Content-Type": "application/json"}
    image = image_routed_to(broken.address, replicas)
    resp = await client.post("/api/function_invocations", data=invocation_body(image), headers=headers)
    assert resp.status == 200
    assert resp.headers["X-Encoder-Replica"] == "live"
    assert len(broken.requests) == 1 and len(live.received) == 1
    labels = {"function": SAM_FUNCTION, "reason": "bad_answer"}
    assert await metric(client, "sam_gateway_upstream_errors_total", labels) == 1
