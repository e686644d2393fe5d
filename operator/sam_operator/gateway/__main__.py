"""Entry point of ``sam-gateway`` / ``python -m sam_operator.gateway``: settings → app + watcher → serve."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from sam_operator.gateway.app import create_app, notify_changed
from sam_operator.gateway.settings import GatewaySettings
from sam_operator.gateway.state import CATALOG
from sam_operator.gateway.watcher import ClusterWatcher

_STANDARD_RECORD_KEYS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD_RECORD_KEYS})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD_RECORD_KEYS}
        return line + "".join(f" {k}={v}" for k, v in extra.items()) if extra else line


def configure_logging(settings: GatewaySettings) -> None:
    """Plain logs locally, JSON lines in-cluster (``SAM_GATEWAY_LOG_JSON``)."""
    handler = logging.StreamHandler()
    if settings.log_json:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_PlainFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler], force=True)
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
    return app


def main() -> None:
    """Run the gateway until SIGINT/SIGTERM."""
    settings = GatewaySettings()
    configure_logging(settings)
    logging.getLogger(__name__).info(
        "Starting gateway", extra={"port": settings.port, "namespaces": settings.namespaces or "all"}
    )
    web.run_app(build_app(settings), host=settings.host, port=settings.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
