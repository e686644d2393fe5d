"""Request-independent core of the encoder: image bytes → embedding (cached, batched) → masks.

Routes call `EmbeddingService`; it owns the cache, the micro-batcher, the decode thread pool and the
prompt-prefix refinement store (`refine.py`), and records per-stage latency. No HTTP and no torch here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .batching import MicroBatcher
from .cache import EmbeddingCache, Lookup
from .imaging import decode_image
from .metrics import Metrics
from .predictor import Embedding, ImageFeatures, MaskResult, Predictor, PreparedImage, Prompts
from .refine import RefinementStore

R = TypeVar("R")


def cache_key(image: bytes, model_id: str) -> str:
    """Digest of the image bytes, qualified by the model identity."""
    return hashlib.sha256(model_id.encode() + b"\0" + hashlib.sha256(image).digest()).hexdigest()


class EmbeddingService:
    """Embeddings and masks for raw image bytes."""

    def __init__(
        self,
        predictor: Predictor,
        *,
        model_id: str,
        metrics: Metrics,
        max_pixels: int,
        max_batch_size: int,
        batch_wait_ms: float,
        max_queue: int,
        cache_max_bytes: int,
        cache_max_entries: int,
        decode_threads: int = 2,
        exclusive_cpu: bool = False,
        refine_ttl_s: float = 0.0,
        refine_max_entries: int = 0,
    ) -> None:
        self.predictor = predictor
        self.model_id = model_id
        self.metrics = metrics
        self.max_pixels = max_pixels
        self.cache: EmbeddingCache[Embedding] = EmbeddingCache(cache_max_bytes, cache_max_entries, metrics)
        self.refinements = RefinementStore(refine_ttl_s, refine_max_entries)
        self.batcher: MicroBatcher[PreparedImage, ImageFeatures] = MicroBatcher(
            self._run_batch,
            max_batch=max_batch_size,
            wait_s=batch_wait_ms / 1000.0,
            max_queue=max_queue,
            observer=metrics,
        )
        self._pool = ThreadPoolExecutor(max_workers=decode_threads, thread_name_prefix="decode")
        # On a CPU device the encoder's OpenMP threads already use every core; image decoding running beside
        # them stalls every parallel region (measured: -25..35 % throughput at 16 clients on 2 cores). There,
        # decoding and encoding take turns. On a GPU they overlap.
        self._cpu_turn: threading.Lock | contextlib.nullcontext[None] = (
            threading.Lock() if exclusive_cpu else contextlib.nullcontext()
        )

    def start(self) -> None:
        self.batcher.start()

    async def close(self) -> None:
        await self.batcher.close()
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def run_blocking(self, func: Callable[..., R], *args: Any) -> R:
        """Run a blocking call in the decode pool."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, func, *args)

    def _run_batch(self, batch: Sequence[PreparedImage]) -> list[ImageFeatures]:
        with self._cpu_turn:
            return self.predictor.embed_batch(batch)

    def _prepare(self, image: bytes) -> PreparedImage:
        with self._cpu_turn, self.metrics.stage("decode_image"):
            array = decode_image(image, self.max_pixels)
            return self.predictor.preprocess(array)

    async def _compute(self, image: bytes) -> Embedding:
        async with self.batcher.ticket() as ticket:  # 429 before any decoding when the queue is full
            prepared = await self.run_blocking(self._prepare, image)
            features = await ticket.submit(prepared)
        return Embedding(
            array=features.image_embed, height=prepared.height, width=prepared.width, high_res=features.high_res
        )

    async def _embedding(self, image: bytes, key: str) -> tuple[Embedding, Lookup]:
        return await self.cache.get_or_compute(key, lambda: self._compute(image))

    async def embedding(self, image: bytes) -> tuple[Embedding, Lookup]:
        """The embedding of `image` and whether it came from the cache."""
        return await self._embedding(image, cache_key(image, self.model_id))

    async def masks(self, image: bytes, prompts: Prompts) -> tuple[Embedding, MaskResult | None, Lookup]:
        """Embedding plus the decoded mask for `prompts` (None when there are no prompts). When `prompts` are a
        recently decoded set plus one click, that answer's low-res mask is the decoder's `mask_input`."""
        key = cache_key(image, self.model_id)
        embedding, lookup = await self._embedding(image, key)
        if prompts.empty:
            return embedding, None, lookup
        prior = self.refinements.prior(key, prompts)
        with self.metrics.stage("decode_masks"):
            result = await self.run_blocking(self.predictor.decode_masks, embedding, prompts, prior)
        if prior is not None:
            self.metrics.refined_decodes.inc()
        if result.low_res is not None:
            self.refinements.remember(key, prompts, result.low_res)
        return embedding, result, lookup
