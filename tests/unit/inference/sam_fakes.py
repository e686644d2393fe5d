"""Test doubles and helpers for the encoder tests (imported by conftest and test modules)."""

from __future__ import annotations

import base64
import io
import struct
import threading
import time
import zlib
from collections.abc import Sequence

import numpy as np
from PIL import Image
from sam_inference.predictor import (
    EMBEDDING_SHAPE,
    LOW_RES_SHAPE,
    Embedding,
    ImageFeatures,
    MaskResult,
    PreparedImage,
    Prompts,
)


def image_bytes(width: int = 64, height: int = 48, seed: int = 0, fmt: str = "PNG") -> bytes:
    """A random RGB image encoded as `fmt`."""
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def cvat_body(image: bytes, **extra: object) -> dict[str, object]:
    """The JSON CVAT sends to its SAM function (cvat-protocol §4.3)."""
    return {"image": b64(image), "pos_points": [], "neg_points": [], "obj_bbox": [], **extra}


def png_with_claimed_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` (a decompression-bomb stand-in)."""
    data = bytearray(image_bytes(8, 8))
    ihdr = 8 + 8  # signature, then length + type of the IHDR chunk
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def image_array(data: bytes) -> np.ndarray:
    """Decode like CVAT's handler: PIL → RGB → array."""
    return np.array(Image.open(io.BytesIO(data)).convert("RGB"))


class FakePredictor:
    """Numpy-only predictor: the embedding is filled with the image's mean pixel value.

    `gate` (when set up with `hold()`) blocks `embed_batch` until `release()`, so tests can build up a
    queue deterministically. Every batch size is recorded in `batches`.
    """

    def __init__(self, cpu_bound: bool = False) -> None:
        self.cpu_bound = cpu_bound
        self.active = 0  # preprocess/embed_batch calls running right now
        self.max_active = 0
        self._count_lock = threading.Lock()
        self.batches: list[int] = []
        self.embedded = 0
        self.decoded = 0
        self.mask_inputs: list[np.ndarray | None] = []
        self._gate = threading.Event()
        self._gate.set()
        self.entered = threading.Event()
        self.fail_with: Exception | None = None
        self.warm_gate = threading.Event()
        self.warm_gate.set()

    @property
    def ready(self) -> bool:
        return True

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def load(self) -> None:
        pass

    def warm_up(self) -> None:
        assert self.warm_gate.wait(timeout=30)

    def _enter(self) -> None:
        with self._count_lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)

    def _leave(self) -> None:
        with self._count_lock:
            self.active -= 1

    def preprocess(self, image: np.ndarray) -> PreparedImage:
        self._enter()
        try:
            time.sleep(0.01)  # long enough for overlaps to show when nothing prevents them
        finally:
            self._leave()
        return PreparedImage(data=float(image.mean()), height=image.shape[0], width=image.shape[1])

    def embed_batch(self, batch: Sequence[PreparedImage]) -> list[ImageFeatures]:
        self._enter()
        try:
            self.entered.set()
            self._gate.wait(timeout=30)
            time.sleep(0.01)
        finally:
            self._leave()
        self.batches.append(len(batch))
        if self.fail_with is not None:
            raise self.fail_with
        self.embedded += len(batch)
        return [ImageFeatures(np.full(EMBEDDING_SHAPE, item.data, dtype=np.float32)) for item in batch]

    def decode_masks(self, embedding: Embedding, prompts: Prompts, mask_input: np.ndarray | None = None) -> MaskResult:
        """A box around the first click; the low-res mask is filled with this decode's sequence number, and
        every call's `mask_input` is recorded in `mask_inputs`."""
        self.decoded += 1
        self.mask_inputs.append(mask_input)
        mask = np.zeros((embedding.height, embedding.width), dtype=bool)
        if prompts.points:
            x, y = (int(v) for v in prompts.points[0])
            mask[max(0, y - 2) : y + 3, max(0, x - 3) : x + 4] = True
        return MaskResult(mask=mask, score=0.5, low_res=np.full(LOW_RES_SHAPE, self.decoded, dtype=np.float32))

    def memory_stats(self) -> dict[tuple[str, str], int]:
        return {}

    def close(self) -> None:
        pass


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The value of sample `name{labels}` in a Prometheus exposition, or None."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def shape_to_mask(shape: dict[str, object], height: int, width: int) -> np.ndarray:
    """The full-frame mask a CVAT mask shape (RLE over its bounds, then the bounds) stands for."""
    from sam_inference.schemas import rle_to_mask

    points = shape["points"]
    assert isinstance(points, list)
    *rle, xtl, ytl, xbr, ybr = points
    mask = np.zeros((height, width), dtype=bool)
    mask[ytl : ybr + 1, xtl : xbr + 1] = rle_to_mask(rle, xbr - xtl + 1, ybr - ytl + 1)
    return mask
