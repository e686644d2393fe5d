"""Forward one invocation to an encoder replica, falling back along the rendezvous ranking.

Owns the failure mapping CVAT expects (cvat-protocol §4.4, §11 #1 and #3):

- a connection failure on a replica (refused, reset, disconnected mid-response) → try the next candidate; the
  encoder's ``POST /`` is a pure function of the image, so a replay is safe. That holds until the first byte of
  the answer has gone to the client. By default every answer is read whole first (into one buffer of its
  ``Content-Length``, by :mod:`sam_gateway.replica_http`), so a replica that dies mid-answer is replayed on the
  next one and CVAT never sees it. With ``relay_min_bytes`` set (``SAM_GATEWAY_RELAY_MIN_BYTES``), an answer at
  least that large (an embedding's 5.6 MB) is relayed to an :class:`AnswerSink` as it arrives instead, and a
  replica that breaks off *during* that relay raises :class:`AnswerBroken` (counted, logged; the caller closes
  the client's connection, which then sees a body shorter than its ``Content-Length``): lower latency, traded for
  that one failure no longer being replayed;
- the last candidate disconnecting before any of its answer, even on a new connection (a kept-alive one the
  replica closed as the request went out is already retried by :class:`ReplicaClient`) → one more try on it;
- a replica answering bytes that are not an HTTP/1.1 answer with a length (``bad_answer``) → the next candidate;
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

from multidict import CIMultiDict

from sam_gateway.metrics import GatewayMetrics
from sam_gateway.replica_http import (
    ConnectFailed,
    Disconnected,
    MalformedAnswer,
    ReplicaClient,
    ReplicaConnection,
    UpstreamError,
)

log = logging.getLogger(__name__)

Buffer = bytes | bytearray | memoryview

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

    async def write(self, chunk: Buffer) -> None:
        """Send a piece of the body."""

    async def finish(self) -> None:
        """End the body."""


@dataclass(frozen=True)
class UpstreamResponse:
    """A replica's whole answer, headers already filtered for the client.

    ``chunks``: the body, as the one buffer it was read into (:mod:`sam_gateway.replica_http`), never copied.
    ``relayed``: the body already went to the :class:`AnswerSink` (``chunks`` is empty)."""

    status: int
    chunks: tuple[Buffer, ...]
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
    """Sends invocations to replicas through one :class:`ReplicaClient` (kept-alive connections per replica)."""

    def __init__(
        self,
        client: ReplicaClient,
        metrics: GatewayMetrics,
        upstream_timeout_s: float,
        relay_min_bytes: int = 0,
    ) -> None:
        self._client = client
        self._metrics = metrics
        self._upstream_timeout_s = upstream_timeout_s
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
            started = time.perf_counter()
            relaying = False
            try:
                async with (
                    asyncio.timeout(remaining),
                    self._client.request(replica, method, path, body, outgoing) as (head, answer),
                ):
                    status = head.status
                    reply_headers = filter_response_headers(head.headers)
                    reply_headers[REPLICA_HEADER] = replica
                    length = head.length
                    relayed = (
                        sink is not None
                        and self._relay_min_bytes > 0
                        and length is not None
                        and length >= self._relay_min_bytes
                    )
                    if relayed and sink is not None and length is not None:  # (the repeat narrows for mypy)
                        await sink.start(status, reply_headers, length)
                        relaying = True
                        await self._relay(function, replica, answer, sink)
                        data: tuple[Buffer, ...] = ()
                    else:  # the whole body, in the one buffer it was read into
                        data = (await answer.read(),)
            except ConnectFailed as exc:
                self._record_failure(function, replica, "connect", exc, failures)
                continue
            except TimeoutError as exc:
                if relaying:
                    raise self._broken(function, replica, "timeout", exc) from exc
                self._metrics.upstream_errors.labels(function, "timeout").inc()
                log.warning("Timed out invoking replica", extra={"function": function, "replica": replica})
                raise InvocationError(
                    504,
                    f"Failed to invoke function: {function!r} did not answer within {self._upstream_timeout_s:g} s",
                ) from exc
            except MalformedAnswer as exc:  # the next replica may answer properly
                self._record_failure(function, replica, "bad_answer", exc, failures)
                continue
            except Disconnected as exc:
                self._record_failure(function, replica, "disconnect", exc, failures)
                last = attempt == len(attempts) - 1 and len(attempts) == len(candidates)
                if last and isinstance(exc, Disconnected) and not exc.answer_started:
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

    async def _relay(self, function: str, replica: str, answer: ReplicaConnection, sink: AnswerSink) -> None:
        """Copy the answer's body into ``sink`` piece by piece (after ``sink.start``); the deadline's
        ``TimeoutError`` is the caller's (:meth:`forward`)."""
        try:
            async for piece in answer.pieces():
                await sink.write(piece)
        except UpstreamError as exc:
            raise self._broken(function, replica, "disconnect", exc) from exc
        await sink.finish()

    def _broken(self, function: str, replica: str, reason: str, exc: BaseException) -> AnswerBroken:
        """Count and log a replica breaking off during the relay; the error to raise."""
        self._metrics.upstream_errors.labels(function, reason).inc()
        log.warning(
            "Replica broke off its answer during the relay",
            extra={"function": function, "replica": replica, "error": f"{exc.__class__.__name__}: {exc}"},
        )
        return AnswerBroken(f"{replica}: {exc.__class__.__name__}: {exc}")

    def _record_failure(
        self, function: str, replica: str, reason: str, exc: BaseException, failures: list[str]
    ) -> None:
        self._metrics.upstream_errors.labels(function, reason).inc()
        failures.append(f"{replica}: {exc.__class__.__name__}: {exc}")
        log.warning(
            "Failed to reach replica",
            extra={"function": function, "replica": replica, "reason": reason, "error": str(exc)},
        )
