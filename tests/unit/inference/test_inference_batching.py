"""MicroBatcher: batches form while the encoder is busy, max size holds, full queue → 429."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest
from harness.waiting import until
from sam_inference.batching import MicroBatcher
from sam_inference.errors import OverloadedError


class GatedDoubler:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()

    def __call__(self, batch: Sequence[int]) -> list[int]:
        self.entered.set()
        assert self.gate.wait(timeout=30)
        self.batches.append(list(batch))
        return [2 * x for x in batch]


async def _submit(batcher: MicroBatcher[int, int], value: int) -> int:
    async with batcher.ticket() as ticket:
        return await ticket.submit(value)


async def test_requests_arriving_during_a_batch_form_the_next_batch() -> None:
    run = GatedDoubler()
    batcher: MicroBatcher[int, int] = MicroBatcher(run, max_batch=4, wait_s=0, max_queue=16)
    batcher.start()
    try:
        first = asyncio.create_task(_submit(batcher, 1))
        await asyncio.get_running_loop().run_in_executor(None, run.entered.wait)
        rest = [asyncio.create_task(_submit(batcher, v)) for v in (2, 3, 4, 5, 6)]
        await until(lambda: len(batcher._queue) == 5)
        run.gate.set()
        assert await first == 2
        assert [await t for t in rest] == [4, 6, 8, 10, 12]
    finally:
        await batcher.close()
    assert run.batches == [[1], [2, 3, 4, 5], [6]]


async def test_full_queue_raises_overloaded_with_retry_after() -> None:
    run = GatedDoubler()
    batcher: MicroBatcher[int, int] = MicroBatcher(run, max_batch=1, wait_s=0, max_queue=2)
    batcher.start()
    try:
        running = asyncio.create_task(_submit(batcher, 1))
        await asyncio.get_running_loop().run_in_executor(None, run.entered.wait)
        queued = [asyncio.create_task(_submit(batcher, v)) for v in (2, 3)]
        await until(lambda: batcher.depth == 2)
        with pytest.raises(OverloadedError) as info:
            await _submit(batcher, 4)
        assert info.value.status == 429
        assert int(info.value.headers()["Retry-After"]) >= 1
        run.gate.set()
        assert [await running] + [await t for t in queued] == [2, 4, 6]
        assert batcher.depth == 0
    finally:
        await batcher.close()


async def test_cancelled_requests_are_skipped() -> None:
    run = GatedDoubler()
    batcher: MicroBatcher[int, int] = MicroBatcher(run, max_batch=8, wait_s=0, max_queue=8)
    batcher.start()
    try:
        running = asyncio.create_task(_submit(batcher, 1))
        await asyncio.get_running_loop().run_in_executor(None, run.entered.wait)
        gone = asyncio.create_task(_submit(batcher, 2))
        kept = asyncio.create_task(_submit(batcher, 3))
        await until(lambda: len(batcher._queue) == 2)
        gone.cancel()
        await asyncio.sleep(0)
        run.gate.set()
        assert await running == 2 and await kept == 6
    finally:
        await batcher.close()
    assert run.batches == [[1], [3]]
    assert batcher.depth == 0


async def test_batch_failure_reaches_every_caller() -> None:
    def fail(batch: Sequence[int]) -> list[int]:
        raise RuntimeError("encoder broke")

    batcher: MicroBatcher[int, int] = MicroBatcher(fail, max_batch=4, wait_s=0, max_queue=4)
    batcher.start()
    try:
        with pytest.raises(RuntimeError, match="encoder broke"):
            await _submit(batcher, 1)
        assert batcher.depth == 0
    finally:
        await batcher.close()
