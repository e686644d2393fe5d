"""The gateway's HTTP/1.1 client for its one kind of upstream call: a request to an encoder replica on the
cluster network, answered with a ``Content-Length`` body (issue 13: the gateway's overhead on a 5.6 MB answer).

Why not aiohttp's client here: its parser copies every ~256 KiB piece of the answer into a new ``bytes`` and runs
its stream reader per piece, and a proxy then writes each piece on; measured (bench/README, "Gateway overhead"),
that per-piece work was most of what separated the gateway from a bare TCP relay. Here the answer is read with
:class:`asyncio.BufferedProtocol` straight into one buffer of its announced length: the kernel copies into it,
nothing else does, and the client is sent views of that buffer (:mod:`sam_gateway.routes`).

What it speaks: requests with a body and a ``Content-Length``; answers with a ``Content-Length`` (what every aiohttp
``web.Response`` sends), no body (``HEAD``, 1xx, 204, 304), or a body ended by the replica closing the connection. A
chunked answer is refused (:class:`MalformedAnswer`: the encoder never sends one). Connections are kept alive and
reused per replica (HTTP/1.1), for at most :data:`IDLE_TIMEOUT_S` idle. Errors are the caller's to map
(:mod:`sam_gateway.proxy`): :class:`ConnectFailed`, :class:`Disconnected` (with ``answer_started``) and
:class:`MalformedAnswer`; a deadline is the caller's ``asyncio.timeout``, and a connection interrupted by one is
closed, never reused.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from multidict import CIMultiDict
from yarl import URL

# The first reads (the status line and headers, and whatever of the body came with them) go here.
_HEAD_READ_BYTES = 64 * 1024
_MAX_HEAD_BYTES = 64 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})
_IDLE_PER_REPLICA = 64
# A kept-alive connection idle longer than this is closed, not reused (aiohttp's client default): well inside the
# encoder's own keep-alive (aiohttp's server: 75 s), and a connection to a replica that vanished without closing
# it (a pod killed with its network) is not kept for ever.
IDLE_TIMEOUT_S = 15.0


class UpstreamError(Exception):
    """A replica call that produced no usable answer."""


class ConnectFailed(UpstreamError):
    """No connection to the replica (refused, unreachable, or the connect timeout)."""


class Disconnected(UpstreamError):
    """The connection ended before the whole answer arrived; ``answer_started``: some of it had."""

    def __init__(self, message: str, answer_started: bool) -> None:
        super().__init__(message)
        self.answer_started = answer_started


class MalformedAnswer(UpstreamError):
    """The replica's bytes are not an HTTP/1.x answer this client relays (bad status line, header or length)."""


@dataclass(frozen=True)
class AnswerHead:
    """A parsed status line and headers; ``length`` None: the body ends when the replica closes."""

    status: int
    headers: CIMultiDict[str]
    length: int | None
    keep_alive: bool


def parse_head(head: bytes, method: str) -> AnswerHead:
    """Parse an answer's status line and header lines (without the blank line that ends them)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not (parts[1].isdigit() and len(parts[1]) == 3):
        raise MalformedAnswer(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    status = int(parts[1])
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise MalformedAnswer(f"not a header line: {line[:80]!r}")
        headers.add(name.decode("latin-1"), value.strip().decode("latin-1"))
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        raise MalformedAnswer("a chunked answer (the gateway relays answers with a Content-Length)")
    lengths = set(headers.getall("Content-Length", []))
    length: int | None
    if method == "HEAD" or status < 200 or status in _NO_BODY_STATUSES:
        length = 0
    elif not lengths:
        length = None
    elif len(lengths) == 1 and (text := lengths.pop()).isdigit():
        length = int(text)
    else:
        raise MalformedAnswer(f"bad Content-Length: {headers.getall('Content-Length')!r}")
    connection = headers.get("Connection", "").lower()
    keep_alive = length is not None and "close" not in connection and not parts[0].startswith(b"HTTP/1.0")
    return AnswerHead(status, headers, length, keep_alive)


class ReplicaConnection(asyncio.BufferedProtocol):
    """One kept-alive connection to a replica; one exchange at a time."""

    def __init__(self, max_answer_bytes: int) -> None:
        self._max_answer_bytes = max_answer_bytes
        self._transport: asyncio.Transport | None = None
        self._scratch = bytearray(_HEAD_READ_BYTES)
        self._method = "POST"
        self._head_bytes = bytearray()
        self._head: asyncio.Future[AnswerHead] | None = None
        self._body: bytearray | None = None
        self._filled = 0
        self._progress = asyncio.Event()
        self._error: UpstreamError | None = None
        self.closed = False

    # ------------------------------------------------------------- protocol side
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._body is not None and self._filled < len(self._body):
            return memoryview(self._body)[self._filled :]
        return memoryview(self._scratch)

    def buffer_updated(self, nbytes: int) -> None:
        if self._body is not None and self._filled < len(self._body):
            self._filled += nbytes
            self._progress.set()
        elif self._head is not None and not self._head.done():
            self._head_bytes += self._scratch[:nbytes]
            self._take_head()
        elif self._body is not None and self._head is not None and self._head.result().length is None:
            self._body += self._scratch[:nbytes]  # a close-delimited body grows as it comes
            self._filled = len(self._body)
            self._progress.set()
        else:  # bytes nobody asked for: the connection cannot be trusted any more
            self._fail(MalformedAnswer("bytes beyond the answer"), close=True)

    def eof_received(self) -> bool | None:
        self._end("the replica closed the connection")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(f"connection lost: {exc.__class__.__name__}: {exc}" if exc else "connection closed")

    # ---------------------------------------------------------------- exchange side
    async def exchange(self, head: bytes, body: bytes, method: str) -> AnswerHead:
        """Send one request; return the answer's head (its body follows with :meth:`pieces` or :meth:`read`)."""
        assert self._transport is not None
        self._method = method
        self._head_bytes.clear()
        self._body, self._filled, self._error = None, 0, None
        self._progress.clear()
        self._head = asyncio.get_running_loop().create_future()
        self._transport.write(head)
        if body:
            self._transport.write(body)
        return await self._head

    async def pieces(self) -> AsyncIterator[bytes | memoryview]:
        """The body as it arrives, each piece a view into the one answer buffer (never overwritten); a copy where
        the body is close-delimited, since that buffer grows (a view held would forbid resizing it)."""
        assert self._body is not None and self._head is not None
        growing = self._head.result().length is None
        sent = 0
        while True:
            if self._filled > sent:
                filled = self._filled
                yield bytes(self._body[sent:filled]) if growing else memoryview(self._body)[sent:filled]
                sent = filled
                continue
            if self._complete():
                return
            if self._error is not None:
                raise self._error
            self._progress.clear()
            await self._progress.wait()

    async def read(self) -> bytearray:
        """The whole body."""
        async for _ in self.pieces():
            pass
        assert self._body is not None
        return self._body

    @property
    def reusable(self) -> bool:
        """The last answer is complete and the replica keeps the connection open."""
        return not self.closed and self._head is not None and self._head.done() and self._complete()

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    # --------------------------------------------------------------------- internals
    def _complete(self) -> bool:
        if self._body is None or self._head is None or not self._head.done() or self._head.exception():
            return False
        length = self._head.result().length
        return self._filled == length if length is not None else self.closed and self._error is None

    def _take_head(self) -> None:
        assert self._head is not None
        end = self._head_bytes.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head_bytes) > _MAX_HEAD_BYTES:
                self._fail(MalformedAnswer(f"no end of the headers in {_MAX_HEAD_BYTES} bytes"), close=True)
            return
        try:
            head = parse_head(bytes(self._head_bytes[:end]), self._method)
            if head.length is not None and head.length > self._max_answer_bytes:
                raise MalformedAnswer(f"an answer of {head.length} bytes (the most relayed: {self._max_answer_bytes})")
        except MalformedAnswer as exc:
            self._fail(exc, close=True)
            return
        rest = self._head_bytes[end + 4 :]
        if 100 <= head.status < 200:  # an interim answer (100 Continue): the real one follows
            self._head_bytes = rest
            self._take_head()
            return
        if head.length is None:
            self._body = bytearray(rest)
        else:
            if len(rest) > head.length:
                self._fail(MalformedAnswer("bytes beyond the answer"), close=True)
                return
            self._body = bytearray(head.length)
            self._body[: len(rest)] = rest
        self._filled = len(rest)
        self._head.set_result(head)
        self._progress.set()

    def _end(self, reason: str) -> None:
        self.closed = True
        if self._head is None:  # never used
            return
        if not self._head.done():
            self._head.set_exception(Disconnected(f"{reason} before the answer", answer_started=bool(self._head_bytes)))
        elif self._body is not None and not self._complete() and self._error is None:
            self._error = Disconnected(f"{reason} during the answer", answer_started=True)
        self._progress.set()

    def _fail(self, error: UpstreamError, close: bool) -> None:
        if self._head is not None and not self._head.done():
            self._head.set_exception(error)
        elif self._error is None:
            self._error = error
        self._progress.set()
        if close:
            self.close()


class ReplicaClient:
    """Kept-alive connections to replicas (``host:port``), one exchange per connection at a time."""

    def __init__(
        self,
        connect_timeout_s: float,
        max_answer_bytes: int = 256 * 1024 * 1024,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        self._connect_timeout_s = connect_timeout_s
        self._max_answer_bytes = max_answer_bytes
        self._idle_timeout_s = idle_timeout_s
        # Per replica, its idle connections with the loop time each went idle (the newest last).
        self._idle: dict[str, list[tuple[ReplicaConnection, float]]] = {}
        self._swept = 0.0

    @contextlib.asynccontextmanager
    async def request(
        self, replica: str, method: str, path: str, body: bytes, headers: Mapping[str, str]
    ) -> AsyncIterator[tuple[AnswerHead, ReplicaConnection]]:
        """Send ``method path`` with ``body`` to ``replica``; yield the answer's head and its connection (read the
        body inside the block). The connection goes back to the pool only if its answer was read whole.

        A kept-alive connection the replica had closed as the request went out (no byte of an answer) is retried
        once on a new connection to the same replica, so routing stays on it (the encoder's ``POST /`` is a pure
        function of the image: a replay is safe)."""
        request_head = _request_head(replica, method, path, body, headers)
        connection, reused = await self._connection(replica)
        try:
            try:
                head = await connection.exchange(request_head, body, method)
            except Disconnected as exc:
                if not reused or exc.answer_started:
                    raise
                connection.close()
                connection, reused = await self._connection(replica, fresh=True)
                head = await connection.exchange(request_head, body, method)
            yield head, connection
        except BaseException:
            connection.close()
            raise
        if connection.reusable and head.keep_alive:
            now = asyncio.get_running_loop().time()
            self._sweep(now)
            idle = self._idle.setdefault(replica, [])
            if len(idle) < _IDLE_PER_REPLICA:
                idle.append((connection, now))
                return
        connection.close()

    async def close(self) -> None:
        """Close every idle connection."""
        for connections in self._idle.values():
            for connection, _ in connections:
                connection.close()
        self._idle.clear()

    def idle_connections(self, replica: str) -> int:
        """How many kept-alive connections to ``replica`` wait for reuse."""
        return len(self._idle.get(replica, []))

    def _sweep(self, now: float) -> None:
        """Close the connections idle too long, to every replica (one gone from the catalog is never asked for
        again); at most once per idle timeout."""
        if now - self._swept < self._idle_timeout_s:
            return
        self._swept = now
        for replica, connections in list(self._idle.items()):
            kept = []
            for connection, since in connections:
                if connection.closed or now - since > self._idle_timeout_s:
                    connection.close()
                else:
                    kept.append((connection, since))
            if kept:
                self._idle[replica] = kept
            else:
                del self._idle[replica]

    async def _connection(self, replica: str, fresh: bool = False) -> tuple[ReplicaConnection, bool]:
        """An idle connection to ``replica`` (unless ``fresh``) or a new one; True: it was reused."""
        idle = [] if fresh else self._idle.get(replica, [])
        now = asyncio.get_running_loop().time()
        while idle:
            connection, since = idle.pop()
            if not connection.closed and now - since <= self._idle_timeout_s:
                return connection, True
            connection.close()
        host, _, port = replica.rpartition(":")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                _, protocol = await loop.create_connection(
                    lambda: ReplicaConnection(self._max_answer_bytes), host.strip("[]"), int(port)
                )
        except TimeoutError as exc:
            raise ConnectFailed(f"no connection within {self._connect_timeout_s:g} s") from exc
        except (OSError, ValueError) as exc:
            raise ConnectFailed(f"{exc.__class__.__name__}: {exc}") from exc
        return protocol, False


def request_target(replica: str, path: str) -> str:
    """The request line's target for ``path`` (``x-nuclio-path``, any text) on ``replica``: percent-encoded as
    aiohttp's client did (yarl requoting ``http://<replica>/<path>``), so the request always reaches the replica's
    own path, its query kept and a fragment dropped."""
    url = URL(f"http://{replica}/{path.lstrip('/')}")
    return url.raw_path_qs


def _request_head(replica: str, method: str, path: str, body: bytes, headers: Mapping[str, str]) -> bytes:
    lines = [f"{method} {request_target(replica, path)} HTTP/1.1", f"Host: {replica}"]
    if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
        lines.append(f"Content-Length: {len(body)}")
    # Expect is not passed on: the body goes at once (and a 100 Continue would only be skipped).
    lines.extend(f"{key}: {value}" for key, value in headers.items() if key.lower() != "expect")
    # aiohttp's server decoded the client's header bytes as UTF-8 with surrogateescape: the same bytes go on.
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
