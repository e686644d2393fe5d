"""CVAT's embedding-mode body and the cache entry that stores it: byte layout, round trip, sizes."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from sam_inference.blobs import SAM2_FIELDS, CachedImage, blob_body, embedding_from_blob
from sam_inference.predictor import EMBEDDING_SHAPE, HIGH_RES_SHAPES, Embedding


def _sam1(seed: int = 0) -> Embedding:
    array = np.random.default_rng(seed).standard_normal(EMBEDDING_SHAPE).astype(np.float32)
    return Embedding(array, 1080, 1920)


def _sam2(seed: int = 1) -> Embedding:
    rng = np.random.default_rng(seed)
    high = tuple(rng.standard_normal(shape).astype(np.float32) for shape in HIGH_RES_SHAPES)
    return Embedding(rng.standard_normal(EMBEDDING_SHAPE).astype(np.float32), 480, 640, high_res=high)


def test_sam1_body_is_cvats_blob_of_little_endian_float32() -> None:
    embedding = _sam1()
    body = blob_body(embedding)
    assert body == json.dumps({"blob": base64.b64encode(embedding.array.astype("<f4").tobytes()).decode()}).encode()
    assert len(json.loads(body)["blob"]) == 5_592_408


def test_sam2_body_has_pr_8610s_three_fields_in_order() -> None:
    embedding = _sam2()
    payload = json.loads(blob_body(embedding))
    assert list(payload) == list(SAM2_FIELDS)
    for name, array in zip(SAM2_FIELDS, (*embedding.high_res, embedding.array), strict=True):
        np.testing.assert_array_equal(np.frombuffer(base64.b64decode(payload[name]), dtype="<f4"), array.ravel())


@pytest.mark.parametrize("make", [_sam1, _sam2])
def test_a_body_reads_back_to_the_same_arrays(make: object) -> None:
    embedding = make()  # type: ignore[operator]
    back = embedding_from_blob(blob_body(embedding), embedding.height, embedding.width)
    assert (back.height, back.width) == (embedding.height, embedding.width)
    np.testing.assert_array_equal(back.array, embedding.array)
    assert len(back.high_res) == len(embedding.high_res)
    for got, want in zip(back.high_res, embedding.high_res, strict=True):
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_cached_image_as_body_serves_the_body_and_decodes_the_arrays() -> None:
    embedding = _sam1()
    entry = CachedImage.of(embedding, as_body=True)
    assert entry.arrays is None and entry.blob() is entry.body
    assert entry.nbytes == len(blob_body(embedding))  # 4/3 of the float32 bytes, plus the JSON around it
    np.testing.assert_array_equal(entry.embedding().array, embedding.array)


def test_cached_image_as_arrays_serialises_on_demand() -> None:
    embedding = _sam2()
    entry = CachedImage.of(embedding, as_body=False)
    assert entry.body is None and entry.embedding() is embedding
    assert entry.nbytes == embedding.nbytes == 16 * 1024 * 1024
    assert entry.blob() == blob_body(embedding)


def test_cached_image_holds_exactly_one_form() -> None:
    with pytest.raises(ValueError, match="either"):
        CachedImage(1, 1)
    with pytest.raises(ValueError, match="either"):
        CachedImage(1, 1, arrays=_sam1(), body=b"{}")
