"""Service behaviour over HTTP with a numpy fake predictor: bad input, batching, single-flight, eviction,
429 under overload, deadlines, readiness, metric names."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from harness.waiting import until
from sam_inference.app import STATE
from unit.inference.conftest import ClientFactory
from unit.inference.sam_fakes import (
    FakePredictor,
    b64,
    cvat_body,
    image_bytes,
    metric_value,
    png_with_claimed_size,
)

CONTRACT_METRICS = [
    "sam_inference_requests_total",
    "sam_inference_request_duration_seconds",
    "sam_inference_stage_duration_seconds",
    "sam_inference_batch_size",
    "sam_inference_queue_depth",
    "sam_inference_cache_hits_total",
    "sam_inference_cache_misses_total",
    "sam_inference_cache_evictions_total",
    "sam_inference_cache_bytes",
    "sam_inference_cache_entries",
    "sam_inference_model_load_seconds",
    "sam_inference_ready",
]


async def _entered(fake: FakePredictor) -> None:
    assert await asyncio.get_running_loop().run_in_executor(None, fake.entered.wait, 30)


def _depth(client: TestClient[Any, Any]) -> int:
    service = client.app[STATE].service  # type: ignore[index]
    assert service is not None
    return service.batcher.depth


def _queued(client: TestClient[Any, Any]) -> int:
    """Decoded images waiting in the batcher."""
    service = client.app[STATE].service  # type: ignore[index]
    assert service is not None
    return len(service.batcher._queue)


JPEG = image_bytes(80, 60, seed=1, fmt="JPEG")
PNG = image_bytes(80, 60, seed=2, fmt="PNG")

BAD_CVAT_BODIES = [
    ({"image": "not base64!!"}, 400, "invalid base64"),
    ({"image": b64(b"hello, this is not an image")}, 400, "not a recognised image"),
    ({"image": b64(JPEG[: len(JPEG) // 2])}, 400, "cannot be decoded"),
    ({"image": b64(PNG[: len(PNG) - 40])}, 400, "cannot be decoded"),
    ({"image": b64(png_with_claimed_size(100_000, 100_000))}, 413, "too many pixels"),
    ({"image": b64(png_with_claimed_size(8000, 7000))}, 413, "over the limit"),
    ({"image": 12345}, 400, "image"),
    ({"image": b64(PNG), "pos_points": "here"}, 400, "pos_points"),
    ({"image": b64(PNG), "obj_bbox": [[1, 2, 3]]}, 400, "obj_bbox"),
    ({"pos_points": [[1, 2]]}, 400, "image"),
]


@pytest.mark.parametrize(("body", "status", "needle"), BAD_CVAT_BODIES)
async def test_bad_input_is_a_4xx_json_error(
    make_client: ClientFactory, body: dict[str, Any], status: int, needle: str
) -> None:
    fake = FakePredictor()
    client = await make_client(fake)
    response = await client.post("/", json=body)
    assert response.status == status
    error = (await response.json())["error"]
    assert needle in error
    assert fake.embedded == 0
    ok = await client.post("/", json=cvat_body(PNG))  # the service still works afterwards
    assert ok.status == 200


@pytest.mark.parametrize(
    ("raw", "needle"), [(b"{not json", "not valid JSON"), (b'["image"]', "JSON object"), (b"\xff\xfe", "JSON")]
)
async def test_non_json_bodies_are_400(make_client: ClientFactory, raw: bytes, needle: str) -> None:
    client = await make_client(FakePredictor())
    response = await client.post("/", data=raw, headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert needle in (await response.json())["error"]


async def test_pixel_limit_applies_to_small_images_too(make_client: ClientFactory) -> None:
    client = await make_client(FakePredictor(), max_pixels=1000)
    response = await client.post("/v1/embeddings", data=PNG)
    assert response.status == 413
    assert "80x60" in (await response.json())["error"]


async def test_body_over_the_limit_is_413_json(make_client: ClientFactory) -> None:
    client = await make_client(FakePredictor(), max_body_bytes=4096)
    response = await client.post("/", json={"image": base64.b64encode(b"x" * 8192).decode()})
    assert response.status == 413
    assert "error" in await response.json()


@pytest.mark.parametrize(("query", "data"), [("", b""), ("?dtype=int8", PNG)])
async def test_v1_embeddings_rejects_empty_body_and_unknown_dtype(
    make_client: ClientFactory, query: str, data: bytes
) -> None:
    client = await make_client(FakePredictor())
    response = await client.post(f"/v1/embeddings{query}", data=data)
    assert response.status == 400
    assert "error" in await response.json()


async def test_v1_masks_needs_a_prompt(make_client: ClientFactory) -> None:
    client = await make_client(FakePredictor())
    response = await client.post("/v1/masks", json=cvat_body(PNG))
    assert response.status == 400


async def test_unknown_route_and_method_are_json_errors(make_client: ClientFactory) -> None:
    client = await make_client(FakePredictor())
    assert (await client.get("/nope")).status == 404
    wrong = await client.get("/")
    assert wrong.status == 405
    assert "error" in await wrong.json()


async def test_concurrent_requests_are_batched(make_client: ClientFactory) -> None:
    fake = FakePredictor()
    client = await make_client(fake, max_batch_size=4, batch_wait_ms=0)
    fake.hold()
    first = asyncio.create_task(client.post("/v1/embeddings", data=image_bytes(seed=100)))
    await _entered(fake)
    rest = [asyncio.create_task(client.post("/v1/embeddings", data=image_bytes(seed=s))) for s in (101, 102, 103)]
    await until(lambda: _queued(client) == 3)
    fake.release()
    statuses = [(await t).status for t in [first, *rest]]
    assert statuses == [200] * 4
    assert fake.batches == [1, 3]
    metrics = await (await client.get("/metrics")).text()
    assert metric_value(metrics, "sam_inference_batch_size_count") == 2
    assert metric_value(metrics, "sam_inference_batch_size_sum") == 4


async def test_concurrent_requests_for_one_image_encode_once(make_client: ClientFactory) -> None:
    fake = FakePredictor()
    client = await make_client(fake)
    fake.hold()
    body = cvat_body(image_bytes(seed=200))
    tasks = [asyncio.create_task(client.post("/", json=body)) for _ in range(4)]
    await _entered(fake)
    service = client.app[STATE].service  # type: ignore[index]
    await until(lambda: service.cache.stats.hits == 3)  # the other three joined the computation in flight
    fake.release()
    responses = [await t for t in tasks]
    assert [r.status for r in responses] == [200] * 4
    assert fake.embedded == 1
    assert sorted(r.headers["X-Cache"] for r in responses) == ["miss", "shared", "shared", "shared"]
    bodies = {await r.read() for r in responses}
    assert len(bodies) == 1


async def test_cache_evicts_least_recently_used(make_client: ClientFactory) -> None:
    fake = FakePredictor()
    client = await make_client(fake, cache_max_entries=1)
    a, b = image_bytes(seed=300), image_bytes(seed=301)
    looks = []
    for image in (a, a, b, a):
        response = await client.post("/v1/embeddings", data=image)
        looks.append(response.headers["X-Cache"])
    assert looks == ["miss", "hit", "miss", "miss"]
    assert fake.embedded == 3
    metrics = await (await client.get("/metrics")).text()
    assert metric_value(metrics, "sam_inference_cache_evictions_total") == 2
    assert metric_value(metrics, "sam_inference_cache_entries") == 1


async def test_cache_budget_in_bytes(make_client: ClientFactory) -> None:
    fake = FakePredictor()
    # Room for two entries; in embedding mode an entry is CVAT's body (base64: 4/3 of the 4 MiB of float32).
    client = await make_client(fake, cache_max_bytes=2 * 5_592_420)
    for seed in (400, 401, 402):
        await client.post("/v1/embeddings", data=image_bytes(seed=seed))
    metrics = await (await client.get("/metrics")).text()
    assert metric_value(metrics, "sam_inference_cache_entries") == 2
    assert (await client.post("/v1/embeddings", data=image_bytes(seed=402))).headers["X-Cache"] == "hit"
    assert (await client.post("/v1/embeddings", data=image_bytes(seed=400))).headers["X-Cache"] == "miss"


async def test_full_queue_answers_429_with_retry_after(make_client: ClientFactory) -> None:
    fake = FakePredictor()
    client = await make_client(fake, max_batch_size=1, max_queue=2)
    fake.hold()
    running = asyncio.create_task(client.post("/", json=cvat_body(image_bytes(seed=500))))
    await _entered(fake)
    queued = [asyncio.create_task(client.post("/", json=cvat_body(image_bytes(seed=s)))) for s in (501, 502)]
    await until(lambda: _depth(client) == 2)
    rejected = await client.post("/", json=cvat_body(image_bytes(seed=503)))
    assert rejected.status == 429
    assert int(rejected.headers["Retry-After"]) >= 1
    assert "queue is full" in (await rejected.json())["error"]
    fake.release()
    assert [(await t).status for t in [running, *queued]] == [200, 200, 200]
    metrics = await (await client.get("/metrics")).text()
    assert metric_value(metrics, "sam_inference_requests_total", endpoint="invoke", code="429") == 1
    assert metric_value(metrics, "sam_inference_queue_depth") == 0


async def test_max_concurrency_answers_429_past_the_cap_and_spares_health(make_client: ClientFactory) -> None:
    fake = FakePredictor()
    client = await make_client(fake, max_batch_size=1, max_queue=8, max_concurrency=1)
    fake.hold()
    running = asyncio.create_task(client.post("/", json=cvat_body(image_bytes(seed=510))))
    await _entered(fake)
    rejected = await client.post("/v1/embeddings", data=image_bytes(seed=511))
    assert rejected.status == 429
    assert int(rejected.headers["Retry-After"]) >= 1
    assert "max_concurrency 1" in (await rejected.json())["error"]
    assert (await client.get("/healthz")).status == 200  # not counted against the cap
    fake.release()
    assert (await running).status == 200
    assert (await client.post("/v1/embeddings", data=image_bytes(seed=511))).status == 200


async def test_request_past_its_deadline_is_504(make_client: ClientFactory) -> None:
    fake = FakePredictor()
    client = await make_client(fake, request_timeout_s=0.2)
    fake.hold()
    try:
        response = await client.post("/", json=cvat_body(image_bytes(seed=600)))
        assert response.status == 504
        assert "within 0.2s" in (await response.json())["error"]
    finally:
        fake.release()


async def test_readiness_waits_for_load_and_warm_up(make_client: ClientFactory, aiohttp_client: Any) -> None:
    from sam_inference.app import create_app
    from unit.inference.conftest import make_settings

    fake = FakePredictor()
    fake.warm_gate.clear()
    app = create_app(make_settings(__import__("pathlib").Path("/nonexistent")), predictor=fake)
    client = await aiohttp_client(app)
    try:
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/readyz")).status == 503
        assert (await client.post("/", json=cvat_body(PNG))).status == 503
        metrics = await (await client.get("/metrics")).text()
        assert metric_value(metrics, "sam_inference_ready") == 0
    finally:
        fake.warm_gate.set()
    await app[STATE].loaded.wait()
    assert (await client.get("/readyz")).status == 200


async def test_metrics_use_the_contract_names(make_client: ClientFactory) -> None:
    client = await make_client(FakePredictor(), mode="masks")
    await client.post("/", json=cvat_body(PNG, pos_points=[[5, 5]]))
    response = await client.get("/metrics")
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    for name in CONTRACT_METRICS:
        assert f"# TYPE {name.removesuffix('_total')} " in text or f"# TYPE {name} " in text, name
    for stage in ("decode_image", "queue_wait", "encode", "serialize", "decode_masks"):
        count = metric_value(text, "sam_inference_stage_duration_seconds_count", stage=stage)
        assert count is not None and count >= 1, stage
    assert metric_value(text, "sam_inference_requests_total", endpoint="invoke", code="200") == 1
    assert metric_value(text, "sam_inference_request_duration_seconds_count", endpoint="invoke") == 1
    assert "gpu_memory_bytes{" not in text  # only where CUDA exists


def test_http_layer_does_not_import_torch() -> None:
    code = (
        "import sys, sam_inference.app, sam_inference.routes, sam_inference.service, sam_inference.fetch, "
        "sam_inference.__main__; assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'segment_anything' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("cpu_bound", [True, False])
async def test_cpu_bound_encoder_never_runs_beside_image_decoding(make_client: ClientFactory, cpu_bound: bool) -> None:
    fake = FakePredictor(cpu_bound=cpu_bound)
    client = await make_client(fake, max_batch_size=2)
    fake.hold()
    first = asyncio.create_task(client.post("/v1/embeddings", data=image_bytes(seed=700)))
    await _entered(fake)
    rest = [asyncio.create_task(client.post("/v1/embeddings", data=image_bytes(seed=s))) for s in range(701, 706)]
    await until(lambda: _depth(client) == 5)
    if not cpu_bound:  # decoding goes on while the encoder is busy...
        await until(lambda: _queued(client) == 5)
    fake.release()
    assert [(await t).status for t in [first, *rest]] == [200] * 6
    if cpu_bound:  # ...unless the encoder owns the CPU: then they take turns
        assert fake.max_active == 1
    else:
        assert fake.max_active >= 2
