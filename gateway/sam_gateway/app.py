"""App factory: wires settings, catalog, metrics, the upstream client and the direct-mode listeners.

``create_app(settings, catalog)`` builds the dashboard-API app; its ``cleanup_ctx`` opens the shared client
session and runs the loop that keeps direct-mode ports in step with the catalog. Whoever changes the catalog
(the watcher, or a test) calls :func:`notify_changed` afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from sam_gateway.activator import Activator, Scaler
from sam_gateway.catalog import Catalog
from sam_gateway.direct import DirectListeners
from sam_gateway.metrics import GatewayMetrics
from sam_gateway.proxy import Forwarder
from sam_gateway.replica_http import ReplicaClient
from sam_gateway.routes import add_direct_routes, add_routes, token_auth
from sam_gateway.settings import GatewaySettings
from sam_gateway.state import (
    ACTIVATOR,
    CATALOG,
    CHANGED,
    DIRECT,
    DIRECT_PORT,
    FORWARDER,
    METRICS,
    PARENT,
    SETTINGS,
)

log = logging.getLogger(__name__)

# Failed direct-mode binds (port briefly held elsewhere) are retried this often even without catalog changes.
_DIRECT_RETRY_S = 10.0


def create_app(settings: GatewaySettings, catalog: Catalog | None = None) -> web.Application:
    """The gateway app; pass ``catalog`` to share one with a watcher or a test."""
    if catalog is None:
        catalog = Catalog(pod_address_annotation=settings.pod_address_annotation, encoder_port=settings.encoder_port)
    app = web.Application(middlewares=[token_auth], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[CATALOG] = catalog
    app[METRICS] = GatewayMetrics(catalog)
    app[CHANGED] = asyncio.Event()
    add_routes(app)
    app.cleanup_ctx.append(_client_ctx)
    app.cleanup_ctx.append(_direct_ctx)
    return app


def attach_activator(app: web.Application, scaler: Scaler) -> None:
    """Scale to zero (:mod:`sam_gateway.activator`): wake held invocations, put idle models to sleep."""

    async def activator_ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:

            async def fetch_metrics(replica: str) -> str:
                async with session.get(f"http://{replica}/metrics") as response:
                    response.raise_for_status()
                    return await response.text()

            app[ACTIVATOR] = Activator(
                app[CATALOG], app[METRICS], scaler, fetch_metrics, wake_timeout_s=settings.wake_timeout_s
            )
            task = asyncio.create_task(app[ACTIVATOR].run(settings.scale_to_zero_interval_s), name="sam-gateway-sleep")
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.cleanup_ctx.append(activator_ctx)


def notify_changed(app: web.Application) -> None:
    """Tell the app the catalog changed (must run on the app's event loop)."""
    app[CHANGED].set()


async def sync_direct_listeners(app: web.Application) -> None:
    """Open/close direct-mode ports now so they match the listed functions."""
    if not app[SETTINGS].direct_enabled:
        return
    main_port = app[SETTINGS].port
    ports = {f.http_port for f in app[CATALOG].functions() if f.http_port and f.http_port != main_port}
    await app[DIRECT].sync(ports)


def _direct_app_factory(parent: web.Application) -> Callable[[int], web.Application]:
    settings = parent[SETTINGS]

    def build(port: int) -> web.Application:
        app = web.Application(client_max_size=settings.max_body_bytes)
        app[PARENT] = parent
        app[DIRECT_PORT] = port
        add_direct_routes(app)
        return app

    return build


async def _client_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # No connection limit per replica: concurrency is bounded by the encoders' own queues (429).
    client = ReplicaClient(connect_timeout_s=settings.connect_timeout_s)
    app[FORWARDER] = Forwarder(
        client,
        app[METRICS],
        upstream_timeout_s=settings.upstream_timeout_s,
        relay_min_bytes=settings.relay_min_bytes,
    )
    yield
    await client.close()


async def _direct_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[DIRECT] = DirectListeners(settings.direct_listen_host, _direct_app_factory(app))
    task = asyncio.create_task(_direct_loop(app), name="sam-gateway-direct-ports")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await app[DIRECT].close()


async def _direct_loop(app: web.Application) -> None:
    changed = app[CHANGED]
    while True:
        changed.clear()
        try:
            await sync_direct_listeners(app)
        except Exception:  # keep the loop alive; the next change or retry tick tries again
            log.exception("Failed to sync direct-mode ports")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout=_DIRECT_RETRY_S if app[DIRECT].failed else None)
