"""Masks mode's OpenVINO decoder (issue 13): in bfloat16 where the CPU has it, the masks keep IoU >= 0.98 against
the float32 decoders (onnxruntime's, and upstream `SamPredictor.predict`) over a refinement chain of clicks on
generated scenes; in float32 it is the onnxruntime decoder's function. `auto` picks it where the CPU has AMX."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sam_inference.predictor import Embedding, Prompts
from sam_inference.torch_models.engine.plan import CpuFeatures
from sam_inference.torch_models.onnx_decoder import OnnxLowResDecoder, prompt_points
from sam_inference.torch_models.openvino_decoder import OpenVinoLowResDecoder, compile_config, native_bf16
from sam_inference.torch_models.sam_predictor import SamEncoderPredictor, resolve_mask_decoder
from segment_anything import SamPredictor
from unit.inference.scenes import make_scene


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a.ravel(), b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_auto_picks_openvino_where_the_cpu_has_amx() -> None:
    amx = CpuFeatures.from_flags({"avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"})
    avx512_bf16 = CpuFeatures.from_flags({"avx512_vnni", "avx512_bf16"})
    assert amx.amx_bf16 and not avx512_bf16.amx_bf16
    assert resolve_mask_decoder("auto", "cpu", amx) == "openvino"
    assert resolve_mask_decoder("auto", "cpu", avx512_bf16) == "onnxruntime"
    assert resolve_mask_decoder("auto", "cuda", amx) == "torch"
    assert resolve_mask_decoder("onnxruntime", "cpu", amx) == "onnxruntime"
    assert resolve_mask_decoder("openvino", "cpu", avx512_bf16) == "openvino"


def test_compile_config_disables_snippets_and_never_asks_for_zero_threads() -> None:
    config = compile_config(0)
    assert config["INFERENCE_NUM_THREADS"] == "1" and config["SNIPPETS_MODE"] == "DISABLE"
    assert config["INFERENCE_PRECISION_HINT"] == "f32"  # bfloat16 only where the graph says (its products)
    assert compile_config(4)["INFERENCE_NUM_THREADS"] == "4"


@pytest.fixture(scope="module")
def onnx_decoder(tiny_predictor: Any) -> OnnxLowResDecoder:
    return OnnxLowResDecoder(tiny_predictor.model, threads=2)


@pytest.mark.parametrize("threads", [1, 2])
def test_openvino_float32_is_the_onnxruntime_decoder(
    tiny_predictor: Any, onnx_decoder: OnnxLowResDecoder, threads: int
) -> None:
    decoder = OpenVinoLowResDecoder(tiny_predictor.model, threads=threads, bf16=False)
    rng = np.random.default_rng(threads)
    embedding = rng.standard_normal((1, 256, 64, 64)).astype(np.float32)
    for clicks, mask in ((1, None), (3, rng.standard_normal((1, 256, 256)).astype(np.float32)), (12, None)):
        coords, labels = prompt_points(rng.uniform(0, 1024, (clicks, 2)), np.ones(clicks), None)
        want_score, want = onnx_decoder(embedding, coords, labels, mask)
        score, got = decoder(embedding, coords, labels, mask)
        assert got.shape == want.shape == (1, 256, 256) and got.dtype == np.float32
        assert score == pytest.approx(want_score, abs=1e-4)
        np.testing.assert_allclose(got, want, atol=1e-3 * max(1.0, float(np.abs(want).max())))


@pytest.fixture(scope="module")
def openvino_predictor(tiny_checkpoint: Path, tiny_predictor: Any) -> SamEncoderPredictor:
    """The service's predictor with the OpenVINO decoder in its default precision here (bf16 where native)."""
    predictor = SamEncoderPredictor(
        "vit_tiny", tiny_checkpoint, precision="float32", model=tiny_predictor.model, mask_decoder="openvino"
    )
    predictor.load()
    assert isinstance(predictor._low_res_decoder, OpenVinoLowResDecoder)
    assert predictor._low_res_decoder.bf16 == native_bf16()
    return predictor


@pytest.mark.parametrize("seed", [5, 21, 33])
def test_openvino_masks_keep_iou_over_a_refinement_chain(
    openvino_predictor: SamEncoderPredictor, tiny_predictor: Any, seed: int
) -> None:
    """Five clicks of one interaction at 1080p, each fed the previous click's low-res mask (masks mode): every
    mask against upstream's float32 `SamPredictor.predict` fed its own previous mask."""
    scene = make_scene(seed, width=1920, height=1080)
    reference = SamPredictor(tiny_predictor.model)
    reference.set_image(scene.image)
    embedding = Embedding(reference.get_image_embedding().numpy(), 1080, 1920)
    rng = np.random.default_rng(seed)
    points: list[tuple[float, float]] = []
    ours = theirs = None
    for _ in range(5):
        points.append((float(rng.uniform(200, 1700)), float(rng.uniform(150, 930))))
        labels = (1,) * len(points)
        got = openvino_predictor.decode_masks(embedding, Prompts(tuple(points), labels), ours)
        masks, scores, low_res = reference.predict(
            np.array(points, dtype=np.float32), np.array(labels), mask_input=theirs, multimask_output=len(points) < 2
        )
        best = int(np.argmax(scores))
        assert masks[best].any(), "the reference mask is empty: pick another scene"
        assert _iou(got.mask, masks[best]) >= 0.98, f"click {len(points)}"
        assert got.score == pytest.approx(float(scores[best]), abs=0.02)
        assert got.low_res is not None
        assert _cosine(got.low_res, low_res[best]) >= 0.999
        ours, theirs = got.low_res, low_res[best][None]


def test_the_decoder_reads_its_inputs_in_place_without_writing_them_and_returns_arrays_of_its_own(
    tiny_predictor: Any,
) -> None:
    """The requests share the caller's arrays and their own outputs (`share_inputs`, `share_outputs`): the
    embedding and mask input stay as they were, and one call's answer survives the next call."""
    decoder = OpenVinoLowResDecoder(tiny_predictor.model, threads=2)
    rng = np.random.default_rng(4)
    embedding = rng.standard_normal((1, 256, 64, 64)).astype(np.float32)
    mask = rng.standard_normal((1, 256, 256)).astype(np.float32)
    embedding_before, mask_before = embedding.copy(), mask.copy()
    coords, labels = prompt_points(np.array([[300.0, 200.0]]), np.ones(1), None)
    score, first = decoder(embedding, coords, labels, None)
    kept = first.copy()
    _, second = decoder(embedding, *prompt_points(np.array([[700.0, 500.0]]), np.ones(1), None), None)
    assert not np.array_equal(second, kept)  # another answer went through the same request's buffers...
    np.testing.assert_array_equal(first, kept)  # ...and the first one is unchanged
    decoder(embedding, coords, labels, mask)
    np.testing.assert_array_equal(embedding, embedding_before)
    np.testing.assert_array_equal(mask, mask_before)
    assert decoder(embedding, coords, labels, None)[0] == pytest.approx(score, abs=1e-6)
