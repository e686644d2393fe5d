"""SAM 2.1 (family sam2) through the service: a random `hiera_micro` built by the sam2 package's own config
machinery, its checkpoint fetched from a loopback HTTP server by `sam-inference fetch`, and Meta's
`SAM2ImagePredictor` on the same file as the reference."""

from __future__ import annotations

import base64
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from sam2.build_sam import build_sam2
from sam2.sam2_image_predictor import SAM2ImagePredictor
from sam_inference.__main__ import main
from sam_inference.predictor import HIGH_RES_SHAPES, Prompts
from sam_inference.settings import InferenceSettings
from sam_inference.torch_models.sam2_model import CONFIGS, MICRO_OVERRIDES
from sam_inference.torch_models.sam_predictor import use_multimask
from unit.inference.conftest import ClientFactory
from unit.inference.sam_fakes import cvat_body, image_array, image_bytes, metric_value, shape_to_mask

SAM2_TENSORS = {"high_res_feats_0": HIGH_RES_SHAPES[0], "high_res_feats_1": HIGH_RES_SHAPES[1]}
SAM2_TENSORS["image_embed"] = (1, 256, 64, 64)
FEATURE_BYTES = 16 * 1024 * 1024  # 4 + 8 + 4 MiB of float32


@pytest.fixture(scope="module")
def served_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The hiera_micro checkpoint (`make-tiny --family sam2`) served by an HTTP server on 127.0.0.1."""
    source = tmp_path_factory.mktemp("sam2-src") / "sam2.1_hiera_micro.pt"
    assert main(["make-tiny", "--family", "sam2", "--output", str(source), "--seed", "0"]) == 0
    data = source.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/sam2.1_hiera_micro.pt", hashlib.sha256(data).hexdigest()
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def sam2_checkpoint(served_checkpoint: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkpoint as the pods' init container gets it: `sam-inference fetch`, sha256 verified."""
    url, sha256 = served_checkpoint
    output = tmp_path_factory.mktemp("model-cache") / "checkpoint.pt"
    assert main(["fetch", "--source", url, "--sha256", sha256, "--output", str(output), "--retries", "0"]) == 0
    return output


@pytest.fixture(scope="module")
def reference(sam2_checkpoint: Path) -> SAM2ImagePredictor:
    """Meta's predictor on the fetched file, built by sam2's own `build_sam2`."""
    model = build_sam2(
        CONFIGS["hiera_micro"], str(sam2_checkpoint), device="cpu", hydra_overrides_extra=MICRO_OVERRIDES
    )
    return SAM2ImagePredictor(model)


def _sam2(checkpoint: Path, **overrides: Any) -> dict[str, Any]:
    return {"checkpoint_path": checkpoint, "model_family": "sam2", "model_variant": "hiera_micro", **overrides}


def _predict(reference: SAM2ImagePredictor, prompts: Prompts, mask_input: np.ndarray | None = None) -> Any:
    """`SAM2ImagePredictor.predict` for the service's prompts; (best mask, best score, its low-res logits)."""
    masks, scores, low_res = reference.predict(
        point_coords=np.array(prompts.points, dtype=np.float32).reshape(-1, 2) if prompts.points else None,
        point_labels=np.array(prompts.labels) if prompts.points else None,
        box=np.array(prompts.box) if prompts.box else None,
        mask_input=mask_input,
        multimask_output=use_multimask(prompts),
    )
    best = int(np.argmax(scores))
    return masks[best], float(scores[best]), low_res[best][None]


async def test_embedding_mode_answers_cvat_8610_tensors_equal_to_sam2_image_predictor(
    make_client: ClientFactory, sam2_checkpoint: Path, reference: SAM2ImagePredictor
) -> None:
    client = await make_client(None, **_sam2(sam2_checkpoint, model_id=None))
    image = image_bytes(width=150, height=90, seed=21)  # not square: SAM 2 stretches, SAM 1 pads
    reply = await client.post("/", json=cvat_body(image))
    assert reply.status == 200, await reply.text()
    body = await reply.json()
    assert list(body) == list(SAM2_TENSORS)

    reference.set_image(image_array(image))
    expected = [*reference._features["high_res_feats"], reference._features["image_embed"]]
    for (name, shape), want in zip(SAM2_TENSORS.items(), expected, strict=True):
        got = np.frombuffer(base64.b64decode(body[name]), dtype="<f4").reshape(shape)
        np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=1e-5, err_msg=name)

    again = await client.post("/", json=cvat_body(image))
    assert again.headers["X-Cache"] == "hit" and await again.json() == body
    metrics = await (await client.get("/metrics")).text()
    # One entry, all three tensors, held as the body it answers with (base64: 4/3 of the float32 bytes).
    assert metric_value(metrics, "sam_inference_cache_bytes") == len(await again.read()) > FEATURE_BYTES * 4 // 3


async def test_v1_embeddings_sends_the_three_tensors_back_to_back(
    make_client: ClientFactory, sam2_checkpoint: Path, reference: SAM2ImagePredictor
) -> None:
    client = await make_client(None, **_sam2(sam2_checkpoint))
    image = image_bytes(width=64, height=80, seed=22)
    reply = await client.post("/v1/embeddings", data=image)
    assert reply.status == 200
    assert reply.headers["X-Embedding-Shape"] == "1,32,256,256;1,64,128,128;1,256,64,64"
    raw = np.frombuffer(await reply.read(), dtype="<f4")
    assert raw.nbytes == FEATURE_BYTES
    reference.set_image(image_array(image))
    np.testing.assert_allclose(raw[-256 * 64 * 64 :], reference._features["image_embed"].numpy().ravel(), atol=1e-5)


PROMPTS = [
    {"pos_points": [[40.0, 30.0]]},
    {"pos_points": [[40.0, 30.0], [100.0, 70.0]], "neg_points": [[10.0, 80.0]]},
    {"obj_bbox": [[20.0, 10.0], [120.0, 85.0]]},
    {"obj_bbox": [[20.0, 10.0], [120.0, 85.0]], "neg_points": [[70.0, 50.0]]},
]


@pytest.mark.parametrize("prompt", PROMPTS, ids=["one-click", "clicks", "box", "box-and-click"])
async def test_masks_mode_rle_decodes_to_the_predictors_mask(
    make_client: ClientFactory, sam2_checkpoint: Path, reference: SAM2ImagePredictor, prompt: dict[str, Any]
) -> None:
    client = await make_client(None, **_sam2(sam2_checkpoint, mode="masks", refine_ttl_s=0))
    image = image_bytes(width=160, height=100, seed=23)
    reply = await client.post("/", json=cvat_body(image, **prompt))
    assert reply.status == 200, await reply.text()
    shapes = (await reply.json())["shapes"]

    reference.set_image(image_array(image))
    points = [*prompt.get("pos_points", []), *prompt.get("neg_points", [])]
    labels = [1] * len(prompt.get("pos_points", [])) + [0] * len(prompt.get("neg_points", []))
    box = prompt.get("obj_bbox")
    prompts = Prompts(
        points=tuple(tuple(p) for p in points),  # type: ignore[misc]
        labels=tuple(labels),
        box=(box[0][0], box[0][1], box[1][0], box[1][1]) if box else None,
    )
    want, score, _ = _predict(reference, prompts)
    assert want.any()  # the random weights of seed 0 give a mask for every one of these prompts
    assert len(shapes) == 1 and shapes[0]["type"] == "mask"
    assert np.array_equal(shape_to_mask(shapes[0], 100, 160), want)
    assert float(shapes[0]["attributes"][0]["value"]) == pytest.approx(score, abs=1e-4)


async def test_a_sam1_checkpoint_for_a_sam2_variant_fails_the_load_with_its_reason(
    make_client: ClientFactory, tiny_checkpoint: Path
) -> None:
    client = await make_client(None, **_sam2(tiny_checkpoint))
    health = await client.get("/healthz")
    assert health.status == 503
    assert "does not fit sam2 variant 'hiera_micro'" in (await health.json())["error"]


def test_settings_reject_a_variant_of_the_other_family(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="'vit_h' is not a sam2 variant"):
        InferenceSettings(checkpoint_path=tmp_path / "c.pt", model_family="sam2", model_variant="vit_h")
    with pytest.raises(ValidationError, match="'hiera_l' is not a sam variant"):
        InferenceSettings(checkpoint_path=tmp_path / "c.pt", model_variant="hiera_l")


def test_export_decoder_skips_sam2_variants(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "decoder.onnx"
    args = ["export-decoder", "--checkpoint", str(tmp_path / "absent.pt"), "--variant", "hiera_l"]
    assert main([*args, "--output", str(output)]) == 0
    assert not output.exists()
    assert "no decoder export for SAM 2" in capsys.readouterr().out


def test_a_batch_encodes_like_single_images(sam2_checkpoint: Path) -> None:
    from sam_inference.torch_models.sam2_predictor import Sam2EncoderPredictor

    predictor = Sam2EncoderPredictor("hiera_micro", sam2_checkpoint)
    predictor.load()
    images = [image_array(image_bytes(width=120, height=90, seed=s)) for s in (24, 25)]
    batch = predictor.embed_batch([predictor.preprocess(i) for i in images])
    for got, image in zip(batch, images, strict=True):
        alone = predictor.embed_batch([predictor.preprocess(image)])[0]
        for a, b in zip((got.image_embed, *got.high_res), (alone.image_embed, *alone.high_res), strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    assert not np.allclose(batch[0].image_embed, batch[1].image_embed)


def test_sam2_precisions_and_engines(tmp_path: Path) -> None:
    from sam_inference.torch_models.sam2_predictor import Sam2EncoderPredictor, resolve_sam2_precision

    assert resolve_sam2_precision("auto", "cpu") == "float32"
    assert resolve_sam2_precision("bfloat16", "cpu") == "bfloat16"
    with pytest.raises(ValueError, match="int8"):
        resolve_sam2_precision("int8", "cpu")
    with pytest.raises(ValueError, match="float16 needs device cuda"):
        resolve_sam2_precision("float16", "cpu")
    with pytest.raises(ValueError, match="engine 'fused' is for family sam"):
        Sam2EncoderPredictor("hiera_t", tmp_path / "c.pt", engine="fused")
