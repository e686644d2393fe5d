"""Request size and pixel limits are on by default (encoder, gateway, CRD, rendered env), and neither the encoder
nor the gateway logs image data or the gateway token, even at DEBUG and on every error path."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from sam_gateway.app import create_app as create_gateway
from sam_gateway.catalog import Catalog
from sam_gateway.settings import GatewaySettings
from sam_inference.app import STATE, create_app
from sam_inference.settings import InferenceSettings
from sam_operator.render import build_children
from sam_operator.resources import SamModel, parse_sammodel
from sam_operator.settings import OperatorSettings
from unit.gateway.gateway_samples import SAM_FUNCTION, free_port, pod, sammodel
from unit.inference.sam_fakes import FakePredictor, image_bytes, png_with_claimed_size

REPO = Path(__file__).resolve().parents[2]
MIB = 2**20
TOKEN = "tok-DO-NOT-LOG-51ce"
ANNOTATION = "samoperator.io/test-address"


def _encoder_settings(tmp_path: Path, **overrides: Any) -> InferenceSettings:
    checkpoint = tmp_path / "c.pth"
    checkpoint.write_bytes(b"x")
    return InferenceSettings(
        checkpoint_path=checkpoint, model_variant="vit_tiny", device="cpu", model_id="t", batch_wait_ms=0, **overrides
    )


# ------------------------------------------------------------------ limits on by default
def test_encoder_limits_default_on(tmp_path: Path) -> None:
    settings = _encoder_settings(tmp_path)
    assert settings.max_body_bytes == 64 * MIB
    assert settings.max_pixels == 50_000_000
    assert settings.max_queue == 32
    assert 0 < settings.request_timeout_s < 120
    app = create_app(settings, predictor=FakePredictor())
    assert app._client_max_size == settings.max_body_bytes


def test_gateway_limits_default_on() -> None:
    settings = GatewaySettings()
    assert settings.max_body_bytes == 64 * MIB
    assert settings.upstream_timeout_s < 120, "below CVAT's own 120 s"
    assert create_gateway(settings)._client_max_size == settings.max_body_bytes


def test_crd_defaults_and_rendered_env_carry_the_limits() -> None:
    crd = yaml.safe_load((REPO / "crds" / "sammodels.yaml").read_text())
    runtime = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["runtime"]
    assert runtime["properties"]["maxBodyBytes"]["default"] == 64 * MIB
    assert runtime["properties"]["maxPixels"]["default"] == 50_000_000
    body = yaml.safe_load((REPO / "crds" / "samples" / "sammodel-minimal.yaml").read_text())
    body["spec"]["runtime"] = {"device": body["spec"].get("runtime", {}).get("device", "cuda")}  # no limits given
    parsed = parse_sammodel(body)
    assert isinstance(parsed, SamModel)
    (deployment,) = [c for c in build_children(parsed, OperatorSettings()) if c["kind"] == "Deployment"]
    env = {e["name"]: e["value"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SAM_INFERENCE_MAX_BODY_BYTES"] == str(64 * MIB)
    assert env["SAM_INFERENCE_MAX_PIXELS"] == "50000000"


async def test_default_limits_reject_with_413(aiohttp_client: Any, tmp_path: Path) -> None:
    app = create_app(_encoder_settings(tmp_path), predictor=FakePredictor())
    client = await aiohttp_client(app)
    await app[STATE].loaded.wait()
    bomb = {"image": base64.b64encode(png_with_claimed_size(8000, 8000)).decode()}  # 64 Mpx > 50 Mpx
    resp = await client.post("/", json=bomb)
    assert resp.status == 413 and "over the limit" in (await resp.json())["error"]
    resp = await client.post("/v1/embeddings", data=b"\0" * (64 * MIB + 1))
    assert resp.status == 413 and (await resp.json())["error"]


# ------------------------------------------------------------------ nothing secret in logs
def _leaks(caplog: pytest.LogCaptureFixture, secrets: list[str]) -> list[str]:
    found = []
    for record in caplog.records:
        text = record.getMessage() + " " + repr(vars(record))
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        found += [f"{record.name}: {secret[:12]}..." for secret in secrets if secret in text]
    return found


async def test_encoder_logs_no_image_data_or_credentials(
    aiohttp_client: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakePredictor()
    app = create_app(_encoder_settings(tmp_path), predictor=fake)
    client = await aiohttp_client(app)
    await app[STATE].loaded.wait()
    image = base64.b64encode(image_bytes(40, 30, seed=7)).decode()
    garbage = base64.b64encode(b"definitely not an image " * 20).decode()
    headers = {"Authorization": f"Bearer {TOKEN}", "Cookie": f"sessionid={TOKEN}"}
    calls = [
        ("/", {"image": image, "pos_points": [[1, 2]]}),
        ("/v1/masks", {"image": image, "pos_points": [[1, 2]]}),
        ("/", {"image": garbage}),
        ("/", {"image": image[:-7]}),
        ("/", {"image": image, "pos_points": [[1e300, 2]]}),
        ("/", {"image": image, "obj_bbox": [1, 2, 3]}),
    ]
    for path, body in calls:
        resp = await client.post(path, data=json.dumps(body), headers=headers)
        assert resp.status in (200, 400)
    resp = await client.post("/", data=b'{"image": "' + image.encode() + b'", ', headers=headers)  # invalid JSON
    assert resp.status == 400
    fake.fail_with = RuntimeError("boom in the model")  # the 500 path logs a traceback
    resp = await client.post(
        "/", json={"image": base64.b64encode(image_bytes(41, 30, seed=8)).decode()}, headers=headers
    )
    assert resp.status == 500
    assert any(r.levelno >= logging.ERROR for r in caplog.records), "the failure itself is logged"
    assert _leaks(caplog, [image, image[:200], image[-200:], garbage[:100], TOKEN]) == []


async def test_gateway_logs_no_image_data_or_token(
    aiohttp_client: Any, aiohttp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def upstream(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"error": "bad image"}, status=400)

    encoder = web.Application()
    encoder.router.add_route("*", "/{tail:.*}", upstream)
    server = await aiohttp_server(encoder, host="127.0.0.1")
    catalog = Catalog(pod_address_annotation=ANNOTATION)
    catalog.upsert_model(sammodel())
    catalog.upsert_model(sammodel(name="dead", function_name="dead-fn", http_port=32769))
    catalog.upsert_pod(pod("enc-0", annotations={ANNOTATION: f"127.0.0.1:{server.port}"}))
    catalog.upsert_pod(
        pod("enc-d", instance="dead", ip="10.0.0.9", annotations={ANNOTATION: f"127.0.0.1:{free_port()}"})
    )
    settings = GatewaySettings(
        host="127.0.0.1",
        direct_enabled=False,
        pod_address_annotation=ANNOTATION,
        token=TOKEN,
        log_level="DEBUG",
        connect_timeout_s=1,
        upstream_timeout_s=5,
    )
    client = await aiohttp_client(create_gateway(settings, catalog))
    image = base64.b64encode(image_bytes(40, 30, seed=9)).decode()
    body = json.dumps({"image": image}).encode()
    for function, auth, expected in (
        (SAM_FUNCTION, f"Bearer {TOKEN}", 400),
        ("dead-fn", f"Bearer {TOKEN}", 503),
        (SAM_FUNCTION, f"Bearer {TOKEN}x", 401),
        ("nope", f"Bearer {TOKEN}", 404),
    ):
        resp = await client.post(
            "/api/function_invocations", data=body, headers={"x-nuclio-function-name": function, "Authorization": auth}
        )
        assert resp.status == expected, (function, resp.status)
    assert any("replica" in r.getMessage().lower() for r in caplog.records), "the dead replica is logged"
    assert _leaks(caplog, [image, image[:200], TOKEN]) == []
    assert TOKEN not in repr(settings)
