"""A work queue of SamModel keys with client-go semantics, served by a bounded pool of worker threads.

- A key is queued at most once: events that arrive while it waits are coalesced into that one pass.
- At most one reconcile per key is in flight; a key added while it runs is marked dirty and runs once more
  afterwards, so the newest state always gets its pass (the reconcile reads the store, not the event).
- Three lanes, served in order: ``add`` is urgent (a SamModel created or edited); ``add_after`` delays a key
  into the middle lane (children's and pods' bursts of events are coalesced into one pass per SamModel; retries
  back off); ``add(urgent=False)`` is the background lane of the periodic resync. A resync of many SamModels,
  or a storm of pod events, never delays an edit or a new SamModel.
- Workers take nothing until ``open`` is called (the informers have listed everything: no reconcile acts on a
  half-filled store).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable

__all__ = ["WorkQueue"]

log = logging.getLogger(__name__)
URGENT, DELAYED, BACKGROUND = 0, 1, 2


class WorkQueue:
    def __init__(self, handler: Callable[[Hashable], None], workers: int, name: str = "sam-reconcile") -> None:
        self._handler = handler
        self._cond = threading.Condition()
        self._lanes: tuple[deque[Hashable], ...] = (deque(), deque(), deque())  # URGENT, DELAYED, BACKGROUND
        self._queued: dict[Hashable, int] = {}  # key -> the lane it waits in
        self._active: set[Hashable] = set()
        self._dirty: dict[Hashable, int] = {}  # key -> the lane of its pass after the running one
        self._delayed: list[tuple[float, int, Hashable]] = []
        self._due: dict[Hashable, float] = {}  # key -> the due time of its live delayed entry
        self._seq = itertools.count()
        self._open = False
        self._stopped = False
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    # ---- producers ---------------------------------------------------------------------------------------------
    def add(self, key: Hashable, urgent: bool = True) -> None:
        with self._cond:
            if urgent:
                self._due.pop(key, None)  # this pass covers the delayed one
            self._enqueue(key, URGENT if urgent else BACKGROUND)

    def add_after(self, key: Hashable, delay: float) -> None:
        with self._cond:
            if self._queued.get(key, BACKGROUND) < BACKGROUND or (key in self._active and key in self._dirty):
                return  # a pass is already coming
            due = time.monotonic() + delay
            if key in self._due and self._due[key] <= due:
                return
            self._due[key] = due
            heapq.heappush(self._delayed, (due, next(self._seq), key))
            self._cond.notify()

    def open(self) -> None:
        with self._cond:
            self._open = True
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    # ---- introspection (tests, metrics) --------------------------------------------------------------------------
    def pending(self) -> int:
        with self._cond:
            return len(self._queued) + len(self._due)

    def idle(self) -> bool:
        with self._cond:
            return not self._queued and not self._due and not self._active

    # ---- internals ---------------------------------------------------------------------------------------------
    def _enqueue(self, key: Hashable, lane: int) -> None:
        if key in self._active:
            self._dirty[key] = min(lane, self._dirty.get(key, lane))
            return
        if key in self._queued and self._queued[key] <= lane:
            return
        self._queued[key] = lane  # new, or moved to a faster lane (the old entry is skipped when reached)
        self._lanes[lane].append(key)
        self._cond.notify()

    def _promote_due(self) -> float | None:
        """Move delayed keys that are due into their lane; return seconds until the next one."""
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            due, _, key = heapq.heappop(self._delayed)
            if self._due.get(key) == due:
                del self._due[key]
                self._enqueue(key, DELAYED)
        return self._delayed[0][0] - now if self._delayed else None

    def _take(self) -> Hashable | None:
        for number, lane in enumerate(self._lanes):
            while lane:
                key = lane.popleft()
                if self._queued.get(key) == number:
                    del self._queued[key]
                    return key
        return None

    def _work(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    wait = self._promote_due()
                    key = self._take() if self._open else None
                    if key is not None:
                        self._active.add(key)
                        break
                    self._cond.wait(wait)
            try:
                self._handler(key)
            except Exception:  # the handler logs its own failures; a worker must never die
                log.exception("Unhandled error in a reconcile worker")
            finally:
                with self._cond:
                    self._active.discard(key)
                    if key in self._dirty:
                        self._enqueue(key, self._dirty.pop(key))
