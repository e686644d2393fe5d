"""Forward one invocation to an encoder replica, falling back along the rendezvous ranking.

Owns the failure mapping CVAT expects (cvat-protocol §4.4, §11 #1 and #3):

- a connection failure on a replica (refused, reset, disconnected mid-response) → try the next candidate; the
  encoder's ``POST /`` is a pure function of the image, so a replay is safe;
- the last candidate disconnecting (``ServerDisconnectedError``: most often a kept-alive connection the server
  closed as the request went out) → one more try on that replica, over a new connection;
- no ready replica, or every candidate failed → :class:`InvocationError` 503, at once;
- the whole invocation, retries included, is bounded by ``upstream_timeout_s`` (< CVAT's 120 s) → 504;
- an upstream 4xx/5xx → returned unchanged.

Called by :mod:`sam_gateway.routes`; knows nothing about the catalog or aiohttp's server side.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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


class InvocationError(Exception):
    """An invocation the gateway answers itself; ``status`` is the HTTP status to return."""

    def __init__(self, status: int, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s  # sent as Retry-After (a model waking from zero)


@dataclass(frozen=True)
class UpstreamResponse:
    """A replica's answer, headers already filtered for the client."""

    status: int
    body: bytes
    headers: CIMultiDict[str]
    replica: str


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
    ) -> None:
        self._session = session
        self._metrics = metrics
        self._upstream_timeout_s = upstream_timeout_s
        self._connect_timeout_s = connect_timeout_s

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
    ) -> UpstreamResponse:
        """Send to ``candidates`` in order until one answers; raise :class:`InvocationError` otherwise.

        ``timeout_s`` shortens the deadline (an invocation that already waited for a model to wake)."""
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
                    method, url, data=io.BytesIO(body), headers=outgoing, timeout=timeout, allow_redirects=False
                ) as resp:
                    data = await resp.read()
                    status = resp.status
                    reply_headers = filter_response_headers(resp.headers)
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
            reply_headers[REPLICA_HEADER] = replica
            return UpstreamResponse(status=status, body=data, headers=reply_headers, replica=replica)
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

    def _record_failure(
        self, function: str, replica: str, reason: str, exc: BaseException, failures: list[str]
    ) -> None:
        self._metrics.upstream_errors.labels(function, reason).inc()
        failures.append(f"{replica}: {exc.__class__.__name__}: {exc}")
        log.warning(
            "Failed to reach replica",
            extra={"function": function, "replica": replica, "reason": reason, "error": str(exc)},
        )
