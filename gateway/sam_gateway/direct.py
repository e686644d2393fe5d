"""CVAT direct mode: one listening socket per function, on the port published in ``status.cvat.httpPort``.

CVAT's direct mode (docker-compose default, cvat-protocol §4.2) POSTs the bare payload to
``http://<host>:<status.httpPort>/`` with no Nuclio headers, so the port itself names the function. Ports come
from the SamModel status (allocated once by the operator), so they survive gateway restarts: this fixes the
stale-port ``Connection refused`` users hit with Nuclio (cvat-protocol §11 #3).

:class:`DirectListeners` only opens and closes sites; the app decides which ports should be open.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from aiohttp import web

log = logging.getLogger(__name__)


class DirectListeners:
    """The set of open direct-mode sites, reconciled to a desired set of ports by :meth:`sync`."""

    def __init__(self, host: str, app_factory: Callable[[int], web.Application]) -> None:
        self._host = host
        self._app_factory = app_factory
        self._runners: dict[int, web.AppRunner] = {}
        self.failed: dict[int, str] = {}

    @property
    def open_ports(self) -> set[int]:
        """Ports currently listening."""
        return set(self._runners)

    async def sync(self, ports: Iterable[int]) -> None:
        """Open missing ports, close unwanted ones; a failed bind is retried on the next sync."""
        wanted = set(ports)
        for port in sorted(self.open_ports - wanted):
            await self._close(port)
        self.failed = {port: why for port, why in self.failed.items() if port in wanted}
        for port in sorted(wanted - self.open_ports):
            await self._open(port)

    async def close(self) -> None:
        """Close every site."""
        for port in sorted(self.open_ports):
            await self._close(port)

    async def _open(self, port: int) -> None:
        runner = web.AppRunner(self._app_factory(port), access_log=None, handle_signals=False, shutdown_timeout=10.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, port, reuse_address=True).start()
        except OSError as exc:
            await runner.cleanup()
            self.failed[port] = str(exc)
            log.error("Failed to open direct-mode port", extra={"port": port, "error": str(exc)})
            return
        self.failed.pop(port, None)
        self._runners[port] = runner
        log.info("Opened direct-mode port", extra={"port": port})

    async def _close(self, port: int) -> None:
        runner = self._runners.pop(port)
        await runner.cleanup()
        log.info("Closed direct-mode port", extra={"port": port})
