"""The service over HTTP with the tiny real SAM: CVAT's contract byte for byte, masks mode, /v1 API."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sam_inference.predictor import Embedding, Prompts
from sam_inference.schemas import rle_to_mask
from segment_anything import SamPredictor
from unit.inference.conftest import ClientFactory
from unit.inference.sam_fakes import cvat_body, image_array, image_bytes, metric_value

BLOB_BYTES = 1 * 256 * 64 * 64 * 4  # 4,194,304
BODY_BYTES = len(b'{"blob": ""}') + 5_592_408  # the response body an embedding-mode cache entry holds


@pytest.fixture(scope="module")
def reference(tiny_predictor: Any) -> SamPredictor:
    return SamPredictor(tiny_predictor.model)


async def test_embedding_mode_returns_cvat_blob_byte_for_byte(
    make_client: ClientFactory, tiny_predictor: Any, reference: SamPredictor
) -> None:
    image = image_bytes(width=320, height=200, seed=11, fmt="JPEG")
    client = await make_client(tiny_predictor)
    body = cvat_body(image, pos_points=[[10.0, 20.0]], obj_bbox=[[1, 2], [30, 40]], threshold=0.5)

    response = await client.post("/", json=body)
    assert response.status == 200
    assert response.content_type == "application/json"
    raw = await response.read()

    payload = json.loads(raw)
    assert list(payload) == ["blob"]
    assert len(payload["blob"]) == 5_592_408
    blob = base64.b64decode(payload["blob"], validate=True)
    assert len(blob) == BLOB_BYTES
    # Exactly the bytes of the encoder output as little-endian float32, in CVAT's JSON shape.
    expected = tiny_predictor.embed_batch([tiny_predictor.preprocess(image_array(image))])[0].image_embed
    assert raw == json.dumps({"blob": base64.b64encode(expected.astype("<f4").tobytes()).decode()}).encode()
    # ...and numerically what CVAT's own handler (SamPredictor.set_image) returns.
    reference.set_image(image_array(image))
    upstream = reference.get_image_embedding().numpy()
    np.testing.assert_allclose(np.frombuffer(blob, dtype="<f4").reshape(1, 256, 64, 64), upstream, atol=1e-6)


async def test_second_request_for_the_same_image_is_a_cache_hit(
    make_client: ClientFactory, tiny_predictor: Any
) -> None:
    client = await make_client(tiny_predictor)
    body = cvat_body(image_bytes(seed=12))
    first = await client.post("/", json=body)
    second = await client.post("/", json=body)
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("miss", "hit")
    assert await first.read() == await second.read()
    metrics = await (await client.get("/metrics")).text()
    assert metric_value(metrics, "sam_inference_cache_hits_total") == 1
    assert metric_value(metrics, "sam_inference_cache_misses_total") == 1
    assert metric_value(metrics, "sam_inference_cache_bytes") == BODY_BYTES == len(await first.read())
    assert metric_value(metrics, "sam_inference_cache_entries") == 1
    assert metric_value(metrics, "sam_inference_stage_duration_seconds_count", stage="serialize") == 1  # the miss only


async def test_masks_mode_returns_cvat_shapes_matching_the_decoder(
    make_client: ClientFactory, tiny_predictor: Any, reference: SamPredictor
) -> None:
    image = image_bytes(width=160, height=100, seed=13)
    client = await make_client(tiny_predictor, mode="masks")
    response = await client.post("/", json=cvat_body(image, pos_points=[[60.0, 40.0]]))
    assert response.status == 200
    shapes = (await response.json())["shapes"]
    assert len(shapes) == 1
    shape = shapes[0]
    assert shape["type"] == "mask"
    assert shape["attributes"][0]["spec_id"] == 0
    *rle, xtl, ytl, xbr, ybr = shape["points"]
    region = rle_to_mask(rle, xbr - xtl + 1, ybr - ytl + 1)
    decoded = np.zeros((100, 160), dtype=bool)
    decoded[ytl : ybr + 1, xtl : xbr + 1] = region

    reference.set_image(image_array(image))
    masks, scores, _ = reference.predict(np.array([[60.0, 40.0]]), np.array([1]), multimask_output=True)
    best = int(np.argmax(scores))
    assert masks[best].any()
    assert np.array_equal(decoded, masks[best])
    assert float(shape["attributes"][0]["value"]) == pytest.approx(float(scores[best]), abs=1e-4)


async def test_masks_mode_without_prompts_returns_no_shapes(make_client: ClientFactory, tiny_predictor: Any) -> None:
    client = await make_client(tiny_predictor, mode="masks")
    response = await client.post("/", json=cvat_body(image_bytes(seed=14)))
    assert response.status == 200
    assert await response.json() == {"shapes": []}


async def test_v1_embeddings_returns_raw_little_endian_arrays(make_client: ClientFactory, tiny_predictor: Any) -> None:
    image = image_bytes(width=90, height=70, seed=15)
    client = await make_client(tiny_predictor)
    full = await client.post("/v1/embeddings", data=image)
    assert full.status == 200
    assert full.headers["X-Embedding-Shape"] == "1,256,64,64"
    assert (full.headers["X-Image-Height"], full.headers["X-Image-Width"]) == ("70", "90")
    as32 = np.frombuffer(await full.read(), dtype="<f4")
    assert as32.size * 4 == BLOB_BYTES

    half = await client.post("/v1/embeddings?dtype=float16", data=image)
    assert half.headers["X-Embedding-Dtype"] == "float16" and half.headers["X-Cache"] == "hit"
    as16 = np.frombuffer(await half.read(), dtype="<f2")
    np.testing.assert_allclose(as16.astype(np.float32), as32, rtol=1e-3, atol=1e-3)


async def test_v1_masks_returns_rle_over_bounds(make_client: ClientFactory, tiny_predictor: Any) -> None:
    image = image_bytes(width=120, height=80, seed=16)
    client = await make_client(tiny_predictor)
    response = await client.post("/v1/masks", json=cvat_body(image, obj_bbox=[[10, 10], [90, 60]]))
    assert response.status == 200
    body = await response.json()
    assert (body["width"], body["height"]) == (120, 80)
    xtl, ytl, xbr, ybr = body["bounds"]
    region = rle_to_mask(body["rle"], xbr - xtl + 1, ybr - ytl + 1)
    embedding = tiny_predictor.embed_batch([tiny_predictor.preprocess(image_array(image))])[0].image_embed
    result = tiny_predictor.decode_masks(Embedding(embedding, 80, 120), Prompts(box=(10.0, 10.0, 90.0, 60.0)))
    assert np.array_equal(region, result.mask[ytl : ybr + 1, xtl : xbr + 1])
    assert not result.mask[:ytl].any() and not result.mask[ybr + 1 :].any()


async def test_decoder_is_served_with_etag_and_revalidation(
    make_client: ClientFactory, tiny_predictor: Any, tiny_decoder: Path
) -> None:
    client = await make_client(tiny_predictor, decoder_path=tiny_decoder)
    response = await client.get("/v1/decoder.onnx")
    assert response.status == 200
    assert await response.read() == tiny_decoder.read_bytes()  # noqa: ASYNC240
    etag = response.headers["ETag"]
    assert "max-age" in response.headers["Cache-Control"]
    again = await client.get("/v1/decoder.onnx", headers={"If-None-Match": etag})
    assert again.status == 304
    stale = await client.get("/v1/decoder.onnx", headers={"If-None-Match": '"other"'})
    assert stale.status == 200


async def test_no_decoder_configured_is_a_404(make_client: ClientFactory, tiny_predictor: Any) -> None:
    client = await make_client(tiny_predictor)
    response = await client.get("/v1/decoder.onnx")
    assert response.status == 404
    assert "error" in await response.json()


async def test_real_model_loads_from_settings_and_reports_ready(
    make_client: ClientFactory, tiny_checkpoint: Path
) -> None:
    client = await make_client(None, model_id=None)
    assert (await client.get("/readyz")).status == 200
    assert (await client.get("/healthz")).status == 200
    metrics = await (await client.get("/metrics")).text()
    assert metric_value(metrics, "sam_inference_ready") == 1
    assert (metric_value(metrics, "sam_inference_model_load_seconds") or 0) > 0
    response = await client.post("/v1/embeddings", data=image_bytes(seed=17))
    assert response.status == 200


async def test_missing_checkpoint_fails_health_and_readiness(make_client: ClientFactory, tmp_path: Path) -> None:
    client = await make_client(None, checkpoint_path=tmp_path / "missing.pth")
    ready = await client.get("/readyz")
    health = await client.get("/healthz")
    assert ready.status == 503 and health.status == 503
    assert "model load failed" in (await health.json())["error"]
    post = await client.post("/", json=cvat_body(image_bytes()))
    assert post.status == 503
