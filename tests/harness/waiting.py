"""Waiting for a condition inside a test's event loop (the blocking twin is ``harness.cluster.wait_for``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["until"]


async def until(predicate: Callable[[], object], tries: int = 2000, interval_s: float = 0.005) -> None:
    """Return once ``predicate()`` is true, checking every ``interval_s``; fail after ``tries`` checks."""
    for _ in range(tries):
        if predicate():
            return
        await asyncio.sleep(interval_s)
    raise AssertionError("condition never became true")
