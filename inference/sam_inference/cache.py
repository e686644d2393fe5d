"""Embedding cache: LRU bounded in bytes (and optionally entries), with single-flight computation.

Keys are digests of the image bytes plus the model identity (see `service.cache_key`), so a hit skips
both image decoding and the encoder. Concurrent requests for one key share one computation: the first
starts it as a task, the others await the same task (shielded, so one client timing out does not cancel
the work the others wait for). Event-loop only; no locks needed.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, Protocol, TypeVar


class Sized(Protocol):
    @property
    def nbytes(self) -> int: ...


V = TypeVar("V", bound=Sized)


class Lookup(StrEnum):
    """How a value was obtained."""

    HIT = "hit"  # stored value
    SHARED = "shared"  # joined a computation already in flight
    MISS = "miss"  # computed by this caller


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0


class CacheObserver(Protocol):
    def on_lookup(self, outcome: Lookup) -> None: ...
    def on_evict(self, count: int) -> None: ...
    def on_size(self, entries: int, nbytes: int) -> None: ...


class EmbeddingCache(Generic[V]):
    """LRU of values with an `nbytes` size; `max_bytes == 0` stores nothing (single-flight still applies)."""

    def __init__(self, max_bytes: int, max_entries: int = 0, observer: CacheObserver | None = None) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.stats = CacheStats()
        self._observer = observer
        self._items: OrderedDict[str, V] = OrderedDict()
        self._bytes = 0
        self._inflight: dict[str, asyncio.Task[V]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key: str) -> V | None:
        """The stored value (marked most recently used), or None."""
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: str, value: V) -> None:
        """Store `value`, evicting least recently used entries to stay within budget."""
        size = value.nbytes
        if size > self.max_bytes:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= old.nbytes
        self._items[key] = value
        self._bytes += size
        evicted = 0
        while self._bytes > self.max_bytes or (self.max_entries and len(self._items) > self.max_entries):
            _, dropped = self._items.popitem(last=False)
            self._bytes -= dropped.nbytes
            evicted += 1
        if evicted:
            self.stats.evictions += evicted
            if self._observer:
                self._observer.on_evict(evicted)
        self._report_size()

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0
        self._report_size()

    async def get_or_compute(self, key: str, compute: Callable[[], Awaitable[V]]) -> tuple[V, Lookup]:
        """Return the cached value for `key`, or compute it once however many callers ask at the same time."""
        value = self.get(key)
        if value is not None:
            return value, self._count(Lookup.HIT)
        task = self._inflight.get(key)
        outcome = Lookup.SHARED
        if task is None:
            outcome = Lookup.MISS
            task = asyncio.ensure_future(compute())
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._settle(key, t))
        self._count(outcome)
        return await asyncio.shield(task), outcome

    def _settle(self, key: str, task: asyncio.Task[V]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled() and task.exception() is None:
            self.put(key, task.result())

    def _count(self, outcome: Lookup) -> Lookup:
        if outcome is Lookup.MISS:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        if self._observer:
            self._observer.on_lookup(outcome)
        return outcome

    def _report_size(self) -> None:
        if self._observer:
            self._observer.on_size(len(self._items), self._bytes)
