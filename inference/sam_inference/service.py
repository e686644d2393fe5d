"""Request-independent core of the encoder: image bytes → embedding (cached, batched) → masks.

Routes call `EmbeddingService`; it owns the cache, the micro-batcher, the decode thread pool and the
prompt-prefix refinement store (`refine.py`), and records per-stage latency. No HTTP and no torch here.
With `store_bodies` (embedding mode) each cache entry is CVAT's response body, serialised once on the miss
(`blobs.py`): a hit answers with the stored bytes.

An image arrives as bytes or as the base64 text of a CVAT body (`Base64Image`). The cache key is always the
digest of the decoded bytes; a text seen before maps to its key directly (a bounded memo by the text's sha256),
so a hit never base64-decodes the frame again. A text decodes to one byte string, so the memo cannot mislead.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from .batching import MicroBatcher
from .blobs import CachedImage
from .cache import EmbeddingCache, Lookup
from .imaging import decode_base64, decode_image
from .metrics import Metrics
from .predictor import Embedding, ImageFeatures, MaskResult, Predictor, PreparedImage, Prompts
from .refine import RefinementStore

R = TypeVar("R")

#: Base64 texts whose cache key is remembered (about 200 bytes each).
TEXT_KEYS_MAX = 4096


def cache_key(image: bytes, model_id: str) -> str:
    """Digest of the image bytes, qualified by the model identity."""
    return hashlib.sha256(model_id.encode() + b"\0" + hashlib.sha256(image).digest()).hexdigest()


@dataclass(frozen=True)
class Base64Image:
    """An image as the base64 text of a request (decoded only when its embedding is not cached)."""

    text: str
    digest: bytes  # sha256 of the text

    @classmethod
    def of(cls, text: str) -> Base64Image:
        # surrogatepass: JSON may carry lone surrogates (a 400 from the base64 rule later), still one digest per text
        return cls(text, hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())


ImageSource = bytes | Base64Image


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
        store_bodies: bool = False,
    ) -> None:
        self.predictor = predictor
        self.store_bodies = store_bodies
        self.model_id = model_id
        self.metrics = metrics
        self.max_pixels = max_pixels
        self.cache: EmbeddingCache[CachedImage] = EmbeddingCache(cache_max_bytes, cache_max_entries, metrics)
        self.refinements = RefinementStore(refine_ttl_s, refine_max_entries)
        self._text_keys: OrderedDict[bytes, str] = OrderedDict()
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

    async def _compute(self, image: bytes) -> CachedImage:
        async with self.batcher.ticket() as ticket:  # 429 before any decoding when the queue is full
            prepared = await self.run_blocking(self._prepare, image)
            features = await ticket.submit(prepared)
        embedding = Embedding(
            array=features.image_embed, height=prepared.height, width=prepared.width, high_res=features.high_res
        )
        if not self.store_bodies:
            return CachedImage.of(embedding, as_body=False)
        with self.metrics.stage("serialize"):
            return await self.run_blocking(CachedImage.of, embedding, True)

    def _decoded_key(self, text: str) -> tuple[str, bytes]:
        image = decode_base64(text)
        return cache_key(image, self.model_id), image

    async def _key(self, image: ImageSource) -> tuple[str, ImageSource]:
        """The cache key of `image`, and `image` decoded unless its entry is cached (then it is not needed)."""
        if isinstance(image, bytes):
            return cache_key(image, self.model_id), image
        known = self._text_keys.get(image.digest)
        if known is not None and known in self.cache:
            self._text_keys.move_to_end(image.digest)
            return known, image
        key, data = await self.run_blocking(self._decoded_key, image.text)
        self._text_keys[image.digest] = key
        self._text_keys.move_to_end(image.digest)
        while len(self._text_keys) > TEXT_KEYS_MAX:
            self._text_keys.popitem(last=False)
        return key, data

    async def _entry(self, key: str, image: ImageSource) -> tuple[CachedImage, Lookup]:
        async def compute() -> CachedImage:
            data = image if isinstance(image, bytes) else (await self.run_blocking(self._decoded_key, image.text))[1]
            return await self._compute(data)

        return await self.cache.get_or_compute(key, compute)

    async def _embedding(self, key: str, image: ImageSource) -> tuple[Embedding, Lookup]:
        entry, lookup = await self._entry(key, image)
        if entry.arrays is not None:
            return entry.arrays, lookup
        return await self.run_blocking(entry.embedding), lookup  # base64-decoded off the loop

    async def embedding(self, image: ImageSource) -> tuple[Embedding, Lookup]:
        """The embedding of `image` and whether it came from the cache."""
        return await self._embedding(*await self._key(image))

    async def blob(self, image: ImageSource) -> tuple[bytes, Lookup]:
        """CVAT's embedding-mode response body for `image` (stored in the cache entry with `store_bodies`)."""
        entry, lookup = await self._entry(*await self._key(image))
        if entry.body is not None:
            return entry.body, lookup
        with self.metrics.stage("serialize"):
            return await self.run_blocking(entry.blob), lookup

    async def masks(self, image: ImageSource, prompts: Prompts) -> tuple[Embedding, MaskResult | None, Lookup]:
        """Embedding plus the decoded mask for `prompts` (None when there are no prompts). When `prompts` are a
        recently decoded set plus one click, that answer's low-res mask is the decoder's `mask_input`."""
        key, image = await self._key(image)
        embedding, lookup = await self._embedding(key, image)
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
