"""Forward one invocation to an encoder replica, falling back along the rendezvous ranking.

Owns the failure mapping CVAT expects (cvat-protocol §4.4, §11 #1 and #3):

- a connection failure on a replica (refused, reset, disconnected mid-response) → try the next candidate; the
  encoder's ``POST /`` is a pure function of the image, so a replay is safe. That holds until the first byte of
  the answer has gone to the client. By default every answer is read whole first (kept as the pieces received,
  never joined), so a replica that dies mid-answer is replayed on the next one and CVAT never sees it. With
  ``relay_min_bytes`` set (``SAM_GATEWAY_RELAY_MIN_BYTES``), an answer at least that large (an embedding's
  5.6 MB) is relayed to an :class:`AnswerSink` as it arrives instead (issue 13: saves the store-and-forward
  time), and a replica that breaks off *during* that relay raises :class:`AnswerBroken` (counted, logged; the
  caller closes the client's connection, which then sees a body shorter than its ``Content-Length``): lower
  latency, traded for that one failure no longer being replayed;
- the last candidate disconnecting (``ServerDisconnectedError``: most often a kept-alive connection the server
  closed as the request went out) → one more try on that replica, over a new connection;
- no ready replica, or every candidate failed → :class:`InvocationError` 503, at once;
- the whole invocation, retries included, is bounded by ``upstream_timeout_s`` (< CVAT's 120 s) → 504;
- an upstream 4xx/5xx → returned unchanged.

Called by :mod:`sam_gateway.routes`; knows nothing about the catalog or aiohttp's server side.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from multidict import CIMultiDict

from sam_gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)

# Never forwarded in either direction (RFC 9110 §7.6.1 hop-by-hop, plus what aiohttp recomputes).
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)
REPLICA_HEADER = "X-Sam-Gateway-Replica"
# A good relay_min_bytes where relaying is wanted: every embedding answer is above it, errors and masks below.
STREAM_MIN_BYTES = 512 * 1024


class InvocationError(Exception):
    """An invocation the gateway answers itself; ``status`` is the HTTP status to return."""

    def __init__(self, status: int, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s  # sent as Retry-After (a model waking from zero)


class AnswerBroken(Exception):
    """The replica failed after part of its answer had been relayed to the client: nothing more can be sent."""


class ClientGone(Exception):
    """Raised by an :class:`AnswerSink` whose client stopped reading (never mistaken for a replica failure)."""


class AnswerSink(Protocol):
    """Where a relayed answer goes (the client's response); every method raises :class:`ClientGone` on failure."""

    async def start(self, status: int, headers: CIMultiDict[str], length: int) -> None:
        """Send the status line and headers."""

    async def write(self, chunk: bytes) -> None:
        """Send a piece of the body."""

    async def finish(self) -> None:
        """End the body."""


@dataclass(frozen=True)
class UpstreamResponse:
    """A replica's whole answer, headers already filtered for the client.

    The body stays in the pieces it arrived in (``chunks``): joining it only to write it out again is a copy.
    ``relayed``: the body already went to the :class:`AnswerSink` (``chunks`` is empty)."""

    status: int
    chunks: tuple[bytes, ...]
    headers: CIMultiDict[str]
    replica: str
    relayed: bool = False

    @property
    def body(self) -> bytes:
        """The body as one bytes object (a copy: for tests and small answers)."""
        return b"".join(self.chunks)

    @property
    def length(self) -> int:
        """Body size in bytes."""
        return sum(len(chunk) for chunk in self.chunks)


def filter_request_headers(headers: Mapping[str, str]) -> CIMultiDict[str]:
    """Request headers worth passing to a replica: no hop-by-hop, no X-Nuclio-*, no gateway credentials."""
    kept: CIMultiDict[str] = CIMultiDict()
    for key, value in headers.items():
        lower = key.lower()
        if lower in _HOP_BY_HOP or lower.startswith("x-nuclio") or lower == "authorization":
            continue
        kept.add(key, value)
    return kept


def filter_response_headers(headers: Mapping[str, str]) -> CIMultiDict[str]:
    """Replica headers returned to CVAT: the Nuclio dashboard strips X-Nuclio-*; hop-by-hop never pass."""
    kept: CIMultiDict[str] = CIMultiDict()
    for key, value in headers.items():
        lower = key.lower()
        if lower in _HOP_BY_HOP or lower.startswith("x-nuclio"):
            continue
        kept.add(key, value)
    return kept


class Forwarder:
    """Sends invocations to replicas over one shared client session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        metrics: GatewayMetrics,
        upstream_timeout_s: float,
        connect_timeout_s: float,
        relay_min_bytes: int = 0,
    ) -> None:
        self._session = session
        self._metrics = metrics
        self._upstream_timeout_s = upstream_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._relay_min_bytes = relay_min_bytes  # 0: every answer read whole (replayable)

    async def forward(
        self,
        function: str,
        candidates: Sequence[str],
        *,
        method: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        timeout_s: float | None = None,
        sink: AnswerSink | None = None,
    ) -> UpstreamResponse:
        """Send to ``candidates`` in order until one answers; raise :class:`InvocationError` otherwise.

        ``timeout_s`` shortens the deadline (an invocation that already waited for a model to wake). With a
        ``sink`` and ``relay_min_bytes`` set, an answer at least that large is relayed into it as it arrives (see
        the module docstring: :class:`AnswerBroken` when the replica breaks off during the relay,
        :class:`ClientGone` passed through)."""
        if not candidates:
            self._metrics.routing_decisions.labels(function, "no_replica").inc()
            raise InvocationError(503, f"Failed to invoke function: no ready replica of {function!r}")
        loop = asyncio.get_running_loop()
        budget = self._upstream_timeout_s if timeout_s is None else min(timeout_s, self._upstream_timeout_s)
        deadline = loop.time() + budget
        outgoing = filter_request_headers(headers)
        failures: list[str] = []
        attempts = list(candidates)
        for attempt, replica in enumerate(attempts):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            outcome = "primary" if attempt == 0 else "retry"
            self._metrics.routing_decisions.labels(function, outcome).inc()
            timeout = aiohttp.ClientTimeout(total=remaining, sock_connect=min(self._connect_timeout_s, remaining))
            url = f"http://{replica}/{path.lstrip('/')}"
            started = time.perf_counter()
            try:
                async with self._session.request(
                    method, url, data=body, headers=outgoing, timeout=timeout, allow_redirects=False
                ) as resp:
                    status = resp.status
                    reply_headers = filter_response_headers(resp.headers)
                    reply_headers[REPLICA_HEADER] = replica
                    length = resp.content_length
                    relayed = (
                        sink is not None
                        and self._relay_min_bytes > 0
                        and length is not None
                        and length >= self._relay_min_bytes
                    )
                    if relayed and sink is not None and length is not None:  # (the repeat narrows for mypy)
                        await sink.start(status, reply_headers, length)
                        await self._relay(function, replica, resp, sink)
                        data: tuple[bytes, ...] = ()
                    else:  # the pieces as received, never joined (UpstreamResponse)
                        data = tuple([chunk async for chunk, _ in resp.content.iter_chunks() if chunk])
            except aiohttp.ConnectionTimeoutError as exc:
                self._record_failure(function, replica, "connect", exc, failures)
                continue
            except (TimeoutError, aiohttp.SocketTimeoutError) as exc:
                self._metrics.upstream_errors.labels(function, "timeout").inc()
                log.warning("Timed out invoking replica", extra={"function": function, "replica": replica})
                raise InvocationError(
                    504,
                    f"Failed to invoke function: {function!r} did not answer within {self._upstream_timeout_s:g} s",
                ) from exc
            except aiohttp.ClientConnectorError as exc:
                self._record_failure(function, replica, "connect", exc, failures)
                continue
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                self._record_failure(function, replica, "disconnect", exc, failures)
                last = attempt == len(attempts) - 1 and len(attempts) == len(candidates)
                if last and isinstance(exc, aiohttp.ServerDisconnectedError):
                    attempts.append(replica)  # the for loop picks it up: the same replica, a new connection
                continue
            self._metrics.upstream_duration.labels(function).observe(time.perf_counter() - started)
            if status >= 400:
                reason = "http_5xx" if status >= 500 else "http_4xx"
                self._metrics.upstream_errors.labels(function, reason).inc()
            return UpstreamResponse(status, data, reply_headers, replica, relayed=relayed)
        if len(failures) < len(attempts):
            # The deadline ran out between attempts.
            self._metrics.upstream_errors.labels(function, "timeout").inc()
            raise InvocationError(
                504,
                f"Failed to invoke function: {function!r} did not answer within {self._upstream_timeout_s:g} s",
            )
        raise InvocationError(
            503, f"Failed to invoke function: every replica of {function!r} failed: " + "; ".join(failures)
        )

    async def _relay(self, function: str, replica: str, resp: aiohttp.ClientResponse, sink: AnswerSink) -> None:
        """Copy the answer's body into ``sink`` piece by piece (after ``sink.start``)."""
        try:
            async for chunk, _ in resp.content.iter_chunks():
                if chunk:
                    await sink.write(chunk)
        except (TimeoutError, aiohttp.ClientError) as exc:
            timed_out = isinstance(exc, TimeoutError | aiohttp.SocketTimeoutError)
            self._metrics.upstream_errors.labels(function, "timeout" if timed_out else "disconnect").inc()
            log.warning(
                "Replica broke off its answer during the relay",
                extra={"function": function, "replica": replica, "error": f"{exc.__class__.__name__}: {exc}"},
            )
            raise AnswerBroken(f"{replica}: {exc.__class__.__name__}: {exc}") from exc
        await sink.finish()

    def _record_failure(
        self, function: str, replica: str, reason: str, exc: BaseException, failures: list[str]
    ) -> None:
        self._metrics.upstream_errors.labels(function, reason).inc()
        failures.append(f"{replica}: {exc.__class__.__name__}: {exc}")
        log.warning(
            "Failed to reach replica",
            extra={"function": function, "replica": replica, "reason": reason, "error": str(exc)},
        )
