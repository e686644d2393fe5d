"""Real aiohttp apps on loopback in a background event loop, callable from synchronous hypothesis tests.

Hypothesis properties are synchronous and re-run their body hundreds of times; function-scoped async fixtures
do not mix with that. So the app under test runs in its own thread and loop (module-scoped), and each example
sends one real HTTP request to it over 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

T = TypeVar("T")


@dataclass(frozen=True)
class Reply:
    status: int
    headers: CIMultiDict[str]
    body: bytes


class BackgroundLoop:
    """One event loop in a daemon thread, with a client session and the apps started on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fuzz-loop", daemon=True)
        self._thread.start()
        self._runners: list[web.AppRunner] = []
        self.session: aiohttp.ClientSession = self.run(self._session())

    async def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=60), auto_decompress=False, skip_auto_headers=["Content-Type"]
        )

    def run(self, coro: Awaitable[T], timeout: float = 120) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        return future.result(timeout)

    def serve(self, factory: Callable[[], Awaitable[web.Application]]) -> str:
        """Build an app (in the loop) and serve it on a free loopback port; return ``127.0.0.1:<port>``."""

        async def start() -> str:
            app = await factory()
            runner = web.AppRunner(app, handle_signals=False, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self._runners.append(runner)
            server = site._server
            assert server is not None
            port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            return f"127.0.0.1:{port}"

        return self.run(start())

    def request(
        self,
        method: str,
        url: str,
        *,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Reply:
        async def go() -> Reply:
            async with self.session.request(
                method, url, data=data, headers=dict(headers or {}), params=params, allow_redirects=False
            ) as resp:
                return Reply(resp.status, CIMultiDict(resp.headers), await resp.read())

        return self.run(go())

    def close(self) -> None:
        async def stop() -> None:
            for runner in reversed(self._runners):
                await runner.cleanup()
            await self.session.close()

        try:
            self.run(stop(), timeout=60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.loop.close()


def call_in_loop(loop: BackgroundLoop, func: Callable[[], Any]) -> Any:
    """Run a plain callable on the loop's thread (e.g. to touch state owned by the loop)."""

    async def wrap() -> Any:
        return func()

    return loop.run(wrap())
