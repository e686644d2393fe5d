"""Entry point of ``sam-gateway`` / ``python -m sam_gateway``: settings → app + watcher → serve."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from sam_contract import logs

from sam_gateway.allocator import tune_malloc
from sam_gateway.app import attach_activator, create_app, notify_changed
from sam_gateway.scaler import KubeScaler
from sam_gateway.settings import GatewaySettings
from sam_gateway.state import CATALOG
from sam_gateway.watcher import ClusterWatcher, build_api_client


def configure_logging(settings: GatewaySettings) -> None:
    """Plain logs locally, JSON lines in-cluster (``SAM_GATEWAY_LOG_JSON``)."""
    logs.configure_logging(json_lines=settings.log_json, level=settings.log_level)
    # The watcher logs its own retries; urllib3's per-attempt warnings only repeat them.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


def build_app(settings: GatewaySettings) -> web.Application:
    """The gateway app with the cluster watcher attached to its lifecycle."""
    app = create_app(settings)

    async def watch_cluster(app: web.Application) -> AsyncIterator[None]:
        watcher = ClusterWatcher(settings, app[CATALOG], on_change=lambda: notify_changed(app))
        watcher.start(asyncio.get_running_loop())
        yield
        watcher.stop()

    app.cleanup_ctx.append(watch_cluster)
    if settings.scale_to_zero_enabled:
        attach_activator(app, KubeScaler(build_api_client(settings)))
    return app


def main() -> None:
    """Run the gateway until SIGINT/SIGTERM."""
    settings = GatewaySettings()
    configure_logging(settings)
    tuned = tune_malloc()
    logging.getLogger(__name__).info(
        "Starting gateway",
        extra={"port": settings.port, "namespaces": settings.namespaces or "all", "malloc_tuned": tuned},
    )
    web.run_app(build_app(settings), host=settings.host, port=settings.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
