"""Micro-batcher: groups concurrent encoder requests into batches run off the event loop.

A request takes a *ticket* (admission) before its image is decoded, so that a full queue answers 429 at
once instead of decoding first. The ticket counts against `max_queue` until its item enters a batch (or
the request gives up). A single worker task takes up to `max_batch` items, waiting at most `wait_s` for a
batch to fill, and runs `run_batch` in a dedicated one-thread executor; while a batch runs, new items
queue up and form the next batch. Items whose caller has gone (timeout, disconnect) are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from .errors import OverloadedError

T = TypeVar("T")
R = TypeVar("R")


class BatchObserver(Protocol):
    def on_batch(self, size: int, seconds: float) -> None: ...
    def on_queue_depth(self, depth: int) -> None: ...
    def on_queue_wait(self, seconds: float) -> None: ...


@dataclass
class _Item(Generic[T, R]):
    payload: T
    future: asyncio.Future[R]
    ticket: Ticket[T, R]
    enqueued: float = field(default_factory=time.monotonic)


class Ticket(Generic[T, R]):
    """An admitted slot in the queue; `submit` once."""

    def __init__(self, batcher: MicroBatcher[T, R]) -> None:
        self._batcher = batcher
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self._batcher._release()

    async def submit(self, payload: T) -> R:
        return await self._batcher._submit(self, payload)


class MicroBatcher(Generic[T, R]):
    """Batches `payload`s for `run_batch(list) -> list` (same order, same length)."""

    def __init__(
        self,
        run_batch: Callable[[Sequence[T]], Sequence[R]],
        *,
        max_batch: int,
        wait_s: float,
        max_queue: int,
        observer: BatchObserver | None = None,
    ) -> None:
        self._run_batch = run_batch
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.max_queue = max_queue
        self._observer = observer
        self._queue: deque[_Item[T, R]] = deque()
        self._tickets = 0
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")
        self._worker: asyncio.Task[None] | None = None
        self._batch_seconds = 0.0  # moving average, for Retry-After
        self.batches_run = 0

    @property
    def depth(self) -> int:
        """Admitted requests not yet in a running batch."""
        return self._tickets

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="micro-batcher")

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        for item in self._queue:
            if not item.future.done():
                item.future.cancel()
        self._queue.clear()
        self._executor.shutdown(wait=True)

    def retry_after_s(self) -> int:
        """Seconds until the queue has probably drained by one batch's worth."""
        batches = math.ceil((self._tickets + 1) / self.max_batch)
        return max(1, math.ceil(batches * max(self._batch_seconds, 0.1)))

    @contextlib.asynccontextmanager
    async def ticket(self) -> AsyncIterator[Ticket[T, R]]:
        """Admit one request or raise `OverloadedError` (429) when `max_queue` requests are waiting."""
        if self._tickets >= self.max_queue:
            raise OverloadedError(
                f"encoder queue is full ({self._tickets} images waiting); retry later", self.retry_after_s()
            )
        self._tickets += 1
        self._report_depth()
        ticket: Ticket[T, R] = Ticket(self)
        try:
            yield ticket
        finally:
            ticket.release()

    def _release(self) -> None:
        self._tickets -= 1
        self._report_depth()

    async def _submit(self, ticket: Ticket[T, R], payload: T) -> R:
        if self._worker is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append(_Item(payload, future, ticket))
        self._wakeup.set()
        return await future

    async def _collect(self) -> list[_Item[T, R]]:
        while not self._queue:
            self._wakeup.clear()
            await self._wakeup.wait()
        deadline = time.monotonic() + self.wait_s
        while len(self._queue) < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break
        batch: list[_Item[T, R]] = []
        while self._queue and len(batch) < self.max_batch:
            item = self._queue.popleft()
            if not item.future.done():  # caller gave up: skip
                batch.append(item)
        return batch

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            if not batch:
                continue
            now = time.monotonic()
            for item in batch:
                item.ticket.release()  # in a running batch: no longer queued
                if self._observer:
                    self._observer.on_queue_wait(now - item.enqueued)
            started = time.monotonic()
            try:
                results = await loop.run_in_executor(self._executor, self._run_batch, [i.payload for i in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} inputs")
            except Exception as exc:
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            finally:
                seconds = time.monotonic() - started
                self.batches_run += 1
                self._batch_seconds = seconds if self.batches_run == 1 else 0.8 * self._batch_seconds + 0.2 * seconds
                if self._observer:
                    self._observer.on_batch(len(batch), seconds)
            for item, result in zip(batch, results, strict=True):
                if not item.future.done():
                    item.future.set_result(result)

    def _report_depth(self) -> None:
        if self._observer:
            self._observer.on_queue_depth(self._tickets)
