"""A bounded burst (40 concurrent CVAT invocations through the real gateway into an encoder with max queue 4 whose
model is held busy) is answered with only 200s and deliberate 429s (with Retry-After), never a 5xx, and the
number admitted is bounded by the queue. No timing: the fake predictor's gate makes the overload deterministic."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

from sam_gateway.app import create_app as create_gateway
from sam_gateway.catalog import Catalog
from sam_gateway.settings import GatewaySettings
from sam_inference.app import STATE, create_app
from sam_inference.settings import InferenceSettings
from unit.gateway.gateway_samples import SAM_FUNCTION, invocation_body, pod, sammodel
from unit.inference.sam_fakes import FakePredictor, image_bytes

ANNOTATION = "samoperator.io/test-address"
BURST = 40
MAX_QUEUE = 4
MAX_BATCH = 2


async def test_burst_gets_only_200_or_429(aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path) -> None:
    checkpoint = tmp_path / "c.pth"
    checkpoint.write_bytes(b"x")
    fake = FakePredictor()
    encoder_app = create_app(
        InferenceSettings(
            checkpoint_path=checkpoint,
            model_variant="vit_tiny",
            device="cpu",
            model_id="burst",
            batch_wait_ms=0,
            max_queue=MAX_QUEUE,
            max_batch_size=MAX_BATCH,
        ),
        predictor=fake,
    )
    encoder = await aiohttp_server(encoder_app, host="127.0.0.1")
    await encoder_app[STATE].loaded.wait()
    catalog = Catalog(pod_address_annotation=ANNOTATION)
    catalog.upsert_model(sammodel())
    catalog.upsert_pod(pod("enc-0", annotations={ANNOTATION: f"127.0.0.1:{encoder.port}"}))
    gateway = await aiohttp_client(
        create_gateway(
            GatewaySettings(host="127.0.0.1", direct_enabled=False, pod_address_annotation=ANNOTATION), catalog
        )
    )

    fake.hold()
    headers = {"x-nuclio-function-name": SAM_FUNCTION, "x-nuclio-path": "/", "Content-Type": "application/json"}

    async def call(i: int) -> tuple[int, str | None, dict[str, Any]]:
        body = invocation_body(image_bytes(32, 24, seed=1000 + i))  # all distinct: no cache help
        resp = await gateway.post("/api/function_invocations", data=body, headers=headers)
        return resp.status, resp.headers.get("Retry-After"), json.loads(await resp.read())

    tasks = [asyncio.create_task(call(i)) for i in range(BURST)]
    # Every request beyond the queue is refused while the model is held; wait for those refusals, then release.
    for _ in range(3000):
        if sum(t.done() for t in tasks) >= BURST - MAX_QUEUE - MAX_BATCH:
            break
        await asyncio.sleep(0.01)
    fake.release()
    results = await asyncio.gather(*tasks)

    codes = Counter(status for status, _, _ in results)
    assert set(codes) <= {200, 429}, codes
    assert codes[429] >= BURST - MAX_QUEUE - MAX_BATCH, codes
    assert 1 <= codes[200] <= MAX_QUEUE + MAX_BATCH, codes
    for status, retry_after, payload in results:
        if status == 429:
            assert retry_after is not None and int(retry_after) >= 1
            assert payload["error"]
        else:
            assert len(payload["blob"]) > 0
    assert fake.embedded == codes[200], "every admitted image was encoded once, refused ones never"
