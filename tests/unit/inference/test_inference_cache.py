"""EmbeddingCache: LRU by bytes and entries, hit/miss accounting, single-flight."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from sam_inference.cache import EmbeddingCache, Lookup


@dataclass(frozen=True)
class Blob:
    name: str
    nbytes: int


async def test_second_lookup_is_a_hit_and_skips_compute() -> None:
    cache: EmbeddingCache[Blob] = EmbeddingCache(max_bytes=100)
    calls = 0

    async def compute() -> Blob:
        nonlocal calls
        calls += 1
        return Blob("a", 10)

    first = await cache.get_or_compute("a", compute)
    second = await cache.get_or_compute("a", compute)
    assert first == (Blob("a", 10), Lookup.MISS)
    assert second == (Blob("a", 10), Lookup.HIT)
    assert calls == 1
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)


def test_evicts_least_recently_used_to_stay_within_bytes() -> None:
    cache: EmbeddingCache[Blob] = EmbeddingCache(max_bytes=30)
    for key in "abc":
        cache.put(key, Blob(key, 10))
    assert cache.get("a") is not None  # a is now most recently used
    cache.put("d", Blob("d", 10))
    assert "b" not in cache
    assert {"a", "c", "d"} <= {k for k in "abcd" if k in cache}
    assert cache.nbytes == 30
    assert cache.stats.evictions == 1


def test_entry_cap_evicts_even_under_the_byte_budget() -> None:
    cache: EmbeddingCache[Blob] = EmbeddingCache(max_bytes=1000, max_entries=2)
    for key in "abc":
        cache.put(key, Blob(key, 1))
    assert len(cache) == 2
    assert "a" not in cache


def test_value_larger_than_budget_is_not_stored() -> None:
    cache: EmbeddingCache[Blob] = EmbeddingCache(max_bytes=5)
    cache.put("a", Blob("a", 10))
    assert len(cache) == 0 and cache.nbytes == 0


async def test_zero_budget_disables_storage() -> None:
    cache: EmbeddingCache[Blob] = EmbeddingCache(max_bytes=0)

    async def compute() -> Blob:
        return Blob("a", 1)

    await cache.get_or_compute("a", compute)
    _, lookup = await cache.get_or_compute("a", compute)
    assert lookup is Lookup.MISS


async def test_concurrent_lookups_compute_once() -> None:
    cache: EmbeddingCache[Blob] = EmbeddingCache(max_bytes=100)
    started = asyncio.Event()
    finish = asyncio.Event()
    calls = 0

    async def compute() -> Blob:
        nonlocal calls
        calls += 1
        started.set()
        await finish.wait()
        return Blob("x", 4)

    tasks = [asyncio.create_task(cache.get_or_compute("k", compute)) for _ in range(5)]
    await started.wait()
    finish.set()
    results = await asyncio.gather(*tasks)
    assert calls == 1
    assert sorted(r[1].value for r in results) == ["miss"] + ["shared"] * 4
    assert all(r[0] == Blob("x", 4) for r in results)


async def test_failed_computation_is_shared_but_not_cached() -> None:
    cache: EmbeddingCache[Blob] = EmbeddingCache(max_bytes=100)
    calls = 0

    async def compute() -> Blob:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        raise ValueError("boom")

    results = await asyncio.gather(*(cache.get_or_compute("k", compute) for _ in range(3)), return_exceptions=True)
    assert calls == 1
    assert all(isinstance(r, ValueError) for r in results)
    with pytest.raises(ValueError):
        await cache.get_or_compute("k", compute)
    assert calls == 2


async def test_cancelled_waiter_does_not_cancel_the_shared_computation() -> None:
    cache: EmbeddingCache[Blob] = EmbeddingCache(max_bytes=100)
    finish = asyncio.Event()

    async def compute() -> Blob:
        await finish.wait()
        return Blob("x", 4)

    first = asyncio.create_task(cache.get_or_compute("k", compute))
    second = asyncio.create_task(cache.get_or_compute("k", compute))
    await asyncio.sleep(0)
    first.cancel()
    finish.set()
    assert (await second)[0] == Blob("x", 4)
    assert "k" in cache
