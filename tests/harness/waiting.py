"""Waiting for a condition inside a test's event loop (the blocking twin is ``harness.cluster.wait_for``)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Callable

import aiohttp

__all__ = ["until", "until_http_ok"]


async def until(predicate: Callable[[], object], tries: int = 2000, interval_s: float = 0.005) -> None:
    """Return once ``predicate()`` is true, checking every ``interval_s``; fail after ``tries`` checks."""
    for _ in range(tries):
        if predicate():
            return
        await asyncio.sleep(interval_s)
    raise AssertionError("condition never became true")


async def until_http_ok(url: str, process: subprocess.Popen[bytes], limit_s: float = 300) -> None:
    """Return once ``GET url`` answers 200; fail at once if ``process`` (the server) exits, or after ``limit_s``."""
    deadline = time.monotonic() + limit_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args} exited with {process.returncode} before {url} answered")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise TimeoutError(url)
