"""CVAT's embedding-mode response body (cvat-protocol §2.3) and the cache entry that holds it ready to send.

SAM 1: `{"blob": base64 of little-endian float32 [1,256,64,64]}`. SAM 2 (CVAT PR #8610, sam2-and-prefetch.md
§A3): `{"high_res_feats_0": ..., "high_res_feats_1": ..., "image_embed": ...}`, each base64 of little-endian
float32, in that order. `blob_body` writes it, `embedding_from_blob` reads back what `blob_body` wrote.

A `CachedImage` keeps an image's embedding either as its arrays (masks mode decodes masks from them) or as
the body itself (embedding mode: serialised once when the embedding is computed, so a cache hit writes the
stored bytes and never base64-encodes 4 MiB again; the arrays are decoded from it only when an endpoint other
than `POST /` asks). Its `nbytes` is what it holds: 4/3 of the arrays' bytes as a body. No torch, no HTTP.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

from .predictor import EMBEDDING_SHAPE, HIGH_RES_SHAPES, Embedding

#: CVAT PR #8610's field names for SAM 2's three tensors, in its order (high_res first, then the embedding).
SAM2_FIELDS = ("high_res_feats_0", "high_res_feats_1", "image_embed")
SAM2_SHAPES = (*HIGH_RES_SHAPES, EMBEDDING_SHAPE)


def _b64_float32(array: np.ndarray) -> bytes:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").data)


def sam2_arrays(embedding: Embedding) -> tuple[np.ndarray, ...]:
    """SAM 2's three tensors in #8610's order."""
    return (*embedding.high_res, embedding.array)


def blob_body(embedding: Embedding) -> bytes:
    """The JSON body of `POST /` in embedding mode for `embedding` (one family or the other)."""
    if not embedding.high_res:
        return b'{"blob": "' + _b64_float32(embedding.array) + b'"}'
    fields = (
        b'"' + name.encode() + b'": "' + _b64_float32(array) + b'"'
        for name, array in zip(SAM2_FIELDS, sam2_arrays(embedding), strict=True)
    )
    return b"{" + b", ".join(fields) + b"}"


def _float32(text: bytes, shape: tuple[int, ...]) -> np.ndarray:
    array = np.frombuffer(base64.b64decode(text), dtype="<f4")
    return array.reshape(shape)


def embedding_from_blob(body: bytes, height: int, width: int) -> Embedding:
    """The `Embedding` whose `blob_body` is `body` (read-only arrays over the decoded bytes)."""
    if body.startswith(b'{"blob": "'):
        return Embedding(_float32(body[len(b'{"blob": "') : -2], EMBEDDING_SHAPE), height, width)
    values = [field.split(b'": "', 1)[1].rstrip(b'"') for field in body[1:-1].split(b", ")]
    if len(values) != len(SAM2_FIELDS):
        raise ValueError(f"a SAM 2 body has {len(SAM2_FIELDS)} fields, got {len(values)}")
    high_0, high_1, embed = (_float32(v, s) for v, s in zip(values, SAM2_SHAPES, strict=True))
    return Embedding(embed, height, width, high_res=(high_0, high_1))


@dataclass(frozen=True)
class CachedImage:
    """One cache entry: an image's embedding as arrays (`embedding`) or as its embedding-mode body (`body`)."""

    height: int
    width: int
    arrays: Embedding | None = None
    body: bytes | None = None

    def __post_init__(self) -> None:
        if (self.arrays is None) == (self.body is None):
            raise ValueError("a CachedImage holds either arrays or a body")

    @classmethod
    def of(cls, embedding: Embedding, as_body: bool) -> CachedImage:
        if as_body:
            return cls(embedding.height, embedding.width, body=blob_body(embedding))
        return cls(embedding.height, embedding.width, arrays=embedding)

    @property
    def nbytes(self) -> int:
        return len(self.body) if self.body is not None else self.embedding().nbytes

    def embedding(self) -> Embedding:
        if self.arrays is not None:
            return self.arrays
        assert self.body is not None
        return embedding_from_blob(self.body, self.height, self.width)

    def blob(self) -> bytes:
        return self.body if self.body is not None else blob_body(self.embedding())
