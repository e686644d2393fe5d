"""HTTP handlers: the Nuclio dashboard API subset CVAT uses, direct-mode ``POST /``, health and metrics.

cvat-protocol §3.2/§10: ``GET /api/functions`` (object keyed by name), ``GET /api/functions/{name}`` (404
``Function not found``), ``POST /api/function_invocations`` routed by ``x-nuclio-function-name``.
Invocations go through :func:`invoke`, shared by dashboard and direct mode.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from multidict import CIMultiDict
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sam_gateway import nuclio
from sam_gateway.catalog import Function
from sam_gateway.proxy import AnswerBroken, Buffer, ClientGone, InvocationError, UpstreamResponse
from sam_gateway.routing import image_digest, rank_replicas
from sam_gateway.state import ACTIVATOR, CATALOG, DIRECT_PORT, FORWARDER, METRICS, PARENT, SETTINGS

log = logging.getLogger(__name__)

FUNCTION_NAME_HEADER = "x-nuclio-function-name"
FUNCTION_NAMESPACE_HEADER = "x-nuclio-function-namespace"
PROJECT_HEADER = "x-nuclio-project-name"
PATH_HEADER = "x-nuclio-path"
# CVAT's own deadline for an invocation is 120 s; a held invocation is answered within this much.
_CVAT_BUDGET_S = 115.0
# Keying a body (CRC-32 of its image text, ~0.3 ms per MB here; ~1 ms per MB when an odd body must be JSON-parsed)
# leaves the event loop above this size; below it the thread hand-off costs more than it frees (a CVAT 1080p JPEG
# frame is ~1 MB of JSON).
_OFFLOAD_DIGEST_BYTES = 4 * 1024 * 1024

# An answer read whole goes to the client this much at a time (see _ClientAnswer.send_whole).
_SEND_SLICE_BYTES = 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, message: str, retry_after_s: int | None = None) -> web.Response:
    """A Nuclio-style JSON error body (with ``Retry-After`` when the caller should come back later)."""
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return web.json_response({"error": message}, status=status, headers=headers)


# ------------------------------------------------------------------- discovery
def _namespace_filter(request: web.Request) -> str | None:
    if not request.app[SETTINGS].strict_namespace:
        return None
    return request.headers.get(FUNCTION_NAMESPACE_HEADER) or None


def _render(app: web.Application, function: Function) -> dict[str, Any]:
    catalog = app[CATALOG]
    return nuclio.build_function(function, app[SETTINGS].project_name, catalog.replicas(function))


async def list_functions(request: web.Request) -> web.Response:
    """``GET /api/functions``: every listed function, keyed by name."""
    project = request.headers.get(PROJECT_HEADER)
    if project and project != request.app[SETTINGS].project_name:
        return web.json_response({})
    functions = request.app[CATALOG].functions(_namespace_filter(request))
    return web.json_response({f.name: _render(request.app, f) for f in functions})


async def get_function(request: web.Request) -> web.Response:
    """``GET /api/functions/{name}``: one function object, or 404 ``Function not found``."""
    function = request.app[CATALOG].get(request.match_info["name"], _namespace_filter(request))
    if function is None:
        return error(404, "Function not found")
    return web.json_response(_render(request.app, function))


# ------------------------------------------------------------------ invocation
async def dashboard_invocation(request: web.Request) -> web.StreamResponse:
    """``/api/function_invocations``: route by ``x-nuclio-function-name``, forward to ``x-nuclio-path``."""
    app = request.app
    name = request.headers.get(FUNCTION_NAME_HEADER, "").strip()
    if not name:
        _count(app, "", "dashboard", 400)
        return error(400, "Function name must be provided")
    function = app[CATALOG].get(name, _namespace_filter(request))
    if function is None:
        _count(app, "", "dashboard", 404)
        return error(404, "Function not found")
    path = request.headers.get(PATH_HEADER, "/")
    return await invoke(app, request, function, mode="dashboard", path=path)


async def direct_invocation(request: web.Request) -> web.StreamResponse:
    """Direct mode ``POST /`` on a function's own port: the port names the function."""
    app = request.app[PARENT]
    port = request.app[DIRECT_PORT]
    function = app[CATALOG].by_port(port)
    if function is None:
        _count(app, "", "direct", 404)
        return error(404, "Function not found")
    return await invoke(app, request, function, mode="direct", path=request.path)


async def invoke(
    app: web.Application, request: web.Request, function: Function, *, mode: str, path: str
) -> web.StreamResponse:
    """Key the image, rank the ready replicas, forward; map failures to Nuclio-style JSON errors."""
    started = time.perf_counter()
    body = await request.read()
    if len(body) > _OFFLOAD_DIGEST_BYTES:
        digest = await asyncio.to_thread(image_digest, body)
    else:
        digest = image_digest(body)
    activator = app.get(ACTIVATOR)
    answer = _ClientAnswer(request)
    if activator is not None:
        activator.invocation_started(function)
    try:
        if activator is None:
            replicas, budget = app[CATALOG].replicas(function), None
        else:  # a model scaled to zero is woken, this invocation held until a replica is Ready
            replicas = await activator.replicas_for(function, mode)
            budget = _CVAT_BUDGET_S - (time.perf_counter() - started)
        candidates = rank_replicas(digest, replicas)
        upstream = await app[FORWARDER].forward(
            function.name,
            candidates,
            method=request.method,
            path=path,
            body=body,
            headers=request.headers,
            timeout_s=budget,
            sink=answer,
        )
        if not upstream.relayed:
            await answer.send_whole(upstream)
    except InvocationError as exc:
        answer.response = error(exc.status, exc.message, exc.retry_after_s)
    except AnswerBroken:  # part of the answer is out: end the connection so the client sees it cut short
        if request.transport is not None:
            request.transport.close()
    except ClientGone:
        log.info("Client disconnected during the answer", extra={"function": function.name})
    finally:
        if activator is not None:
            activator.invocation_finished(function)
    response = answer.response
    metrics = app[METRICS]
    metrics.request_duration.labels(function.name).observe(time.perf_counter() - started)
    _count(app, function.name, mode, response.status)
    return response


class _ClientAnswer:
    """The client's side of a replica's answer (:class:`sam_gateway.proxy.AnswerSink`): a ``StreamResponse``
    with the replica's length, written piece by piece (no join, no chunked encoding)."""

    def __init__(self, request: web.Request) -> None:
        self._request = request
        # Until the answer starts: what to return if the client leaves first (the status is what gets counted).
        self.response = web.StreamResponse(status=499)

    async def start(self, status: int, headers: CIMultiDict[str], length: int) -> None:
        self.response = web.StreamResponse(status=status, headers=headers)
        self.response.content_length = length
        await self._sending(self.response.prepare(self._request))
        # The status line and headers go out on their own: on Python < 3.12 aiohttp would otherwise join them with
        # the first piece of the body (a copy of the whole 5.6 MB answer when it is read whole).
        await self._sending(self.response.write(b""))

    async def write(self, chunk: Buffer) -> None:
        await self._sending(self.response.write(chunk))

    async def finish(self) -> None:
        await self._sending(self.response.write_eof())

    async def send_whole(self, upstream: UpstreamResponse) -> None:
        """Send an answer read whole (``upstream.chunks``), in slices of :data:`_SEND_SLICE_BYTES`.

        On Python < 3.12 asyncio's transport copies whatever the socket does not take at once into its own buffer:
        one 5.6 MB write left megabytes to copy. A slice at a time, each waiting for the last to drain, leaves at
        most part of one slice (bench/README, "Gateway overhead": 2.6 against 2.85 ms overhead p50)."""
        await self.start(upstream.status, upstream.headers, upstream.length)
        for chunk in upstream.chunks:
            view = memoryview(chunk)
            for at in range(0, len(view), _SEND_SLICE_BYTES):
                await self.write(view[at : at + _SEND_SLICE_BYTES])
        await self.finish()

    @staticmethod
    async def _sending(step: Awaitable[object]) -> None:
        try:
            await step
        except ConnectionResetError as exc:  # aiohttp's ClientConnectionResetError included
            raise ClientGone(str(exc)) from exc


def _count(app: web.Application, function: str, mode: str, code: int) -> None:
    app[METRICS].requests.labels(function, mode, str(code)).inc()


# ---------------------------------------------------------------- operations
async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process serves HTTP."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: SamModels and pods have been listed from the API at least once."""
    if not request.app[CATALOG].synced:
        return web.json_response({"status": "waiting for the initial list"}, status=503)
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition of the gateway's registry."""
    payload = generate_latest(request.app[METRICS].registry)
    response = web.Response(body=payload)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


@web.middleware
async def token_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With ``SAM_GATEWAY_TOKEN`` set, ``/api/*`` needs ``Authorization: Bearer <token>``."""
    token = request.app[SETTINGS].token
    if token and request.path.startswith("/api/"):
        supplied = request.headers.get("Authorization", "")
        if not hmac.compare_digest(supplied.encode(), f"Bearer {token}".encode()):
            return error(401, "Unauthorized")
    return await handler(request)


def add_routes(app: web.Application) -> None:
    """Register the dashboard API, health and metrics routes on the main app."""
    app.router.add_get("/api/functions", list_functions)
    app.router.add_get("/api/functions/{name}", get_function)
    app.router.add_route("*", "/api/function_invocations", dashboard_invocation)
    app.router.add_route("*", "/api/function_invocations/{tail:.*}", dashboard_invocation)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


def add_direct_routes(app: web.Application) -> None:
    """Register direct-mode routes: CVAT POSTs to ``/``."""
    app.router.add_post("/", direct_invocation)
    app.router.add_post("/{tail:.*}", direct_invocation)
