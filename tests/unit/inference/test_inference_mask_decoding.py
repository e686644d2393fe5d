"""Masks mode's CPU path: the decoder in onnxruntime and the one-pass windowed upsampling, against upstream."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sam_inference.predictor import Embedding, Prompts
from sam_inference.torch_models.engine.plan import CpuFeatures
from sam_inference.torch_models.mask_upsampling import AxisMap, axis_map, upsample_mask
from sam_inference.torch_models.onnx_decoder import EmbeddingLayouts, tokens_of
from sam_inference.torch_models.sam_predictor import SamEncoderPredictor, resolve_mask_decoder
from segment_anything import SamPredictor
from segment_anything.utils.transforms import ResizeLongestSide
from torch.nn import functional as F
from unit.inference.scenes import make_scene


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _upstream_logits(low: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`Sam.postprocess_masks` of one 256x256 mask: to 1024, crop, to the frame."""
    input_h, input_w = ResizeLongestSide.get_preprocess_shape(height, width, 1024)
    up = F.interpolate(low[None, None], (1024, 1024), mode="bilinear", align_corners=False)
    up = up[..., :input_h, :input_w]
    return F.interpolate(up, (height, width), mode="bilinear", align_corners=False)[0, 0]


def _maps(height: int, width: int) -> tuple[AxisMap, AxisMap]:
    input_h, input_w = ResizeLongestSide.get_preprocess_shape(height, width, 1024)
    return axis_map(256, height, 1024, input_h), axis_map(256, width, 1024, input_w)


@pytest.mark.parametrize(("height", "width"), [(1080, 1920), (100, 160), (2250, 1500), (333, 333)])
def test_one_pass_upsampling_equals_postprocess_masks(height: int, width: int) -> None:
    generator = torch.Generator().manual_seed(height)
    low = F.avg_pool2d(torch.randn(1, 1, 264, 264, generator=generator), 9, stride=1)[0, 0] * 4  # smooth blobs
    want_logits = _upstream_logits(low, height, width)
    got = upsample_mask(low, *_maps(height, width), 0.0)
    want = (want_logits > 0).numpy()
    assert got.shape == (height, width) and got.dtype == np.bool_
    assert 0.05 < want.mean() < 0.95
    # Equal up to float rounding: a pixel may differ only where upstream's logit is next to the threshold.
    assert np.all(np.abs(want_logits.numpy()[got != want]) < 1e-5)
    assert _iou(got, want) > 0.9999


def test_only_the_window_the_positive_logits_reach_is_set() -> None:
    low = torch.full((256, 256), -3.0)
    low[100:104, 40:50] = 2.0
    got = upsample_mask(low, *_maps(1080, 1920), 0.0)
    want = (_upstream_logits(low, 1080, 1920) > 0).numpy()
    assert want.any() and np.array_equal(got, want)
    rows, cols = np.flatnonzero(got.any(axis=1)), np.flatnonzero(got.any(axis=0))
    assert rows[-1] - rows[0] < 40 and cols[-1] - cols[0] < 100


def test_all_negative_logits_give_an_empty_mask() -> None:
    assert not upsample_mask(torch.full((256, 256), -0.5), *_maps(480, 640), 0.0).any()


def test_auto_picks_onnxruntime_on_a_cpu_without_amx_and_torch_on_a_gpu() -> None:
    without_amx = CpuFeatures.from_flags({"avx512_vnni", "avx512_bf16"})
    assert resolve_mask_decoder("auto", "cpu", without_amx) == "onnxruntime"
    assert resolve_mask_decoder("auto", "cuda", without_amx) == "torch"
    assert resolve_mask_decoder("torch", "cpu", without_amx) == "torch"


@pytest.fixture(scope="module")
def onnx_predictor(tiny_checkpoint: Path, tiny_predictor: Any) -> SamEncoderPredictor:
    predictor = SamEncoderPredictor(
        "vit_tiny", tiny_checkpoint, precision="float32", model=tiny_predictor.model, mask_decoder="onnxruntime"
    )
    predictor.load()
    assert predictor._low_res_decoder is not None
    return predictor


PROMPTS = [
    Prompts(points=((300.0, 200.0),), labels=(1,)),  # multimask: best of three
    Prompts(points=((300.0, 200.0), (500.0, 100.0)), labels=(1, 0)),  # single mask
    Prompts(box=(120.0, 80.0, 420.0, 330.0)),  # a box alone: multimask
    Prompts(points=((250.0, 210.0),), labels=(1,), box=(120.0, 80.0, 420.0, 330.0)),
    # 12 clicks + padding: more points than the low-rank graph pays for, so the other graph answers.
    Prompts(points=tuple((200.0 + 15 * i, 150.0 + 10 * i) for i in range(12)), labels=(1,) * 11 + (0,)),
]


@pytest.mark.parametrize("prompts", PROMPTS)
def test_onnxruntime_masks_match_sampredictor_predict(
    onnx_predictor: SamEncoderPredictor, tiny_predictor: Any, prompts: Prompts
) -> None:
    scene = make_scene(21, width=640, height=480)
    reference = SamPredictor(tiny_predictor.model)
    reference.set_image(scene.image)
    embedding = Embedding(reference.get_image_embedding().numpy(), 480, 640)
    tokens = len(prompts.points) + (2 if prompts.box else 1)
    previous = None
    for step in range(2):  # the second decode feeds the first one's low-res mask back, as masks mode does
        got = onnx_predictor.decode_masks(embedding, prompts, previous)
        masks, scores, low_res = reference.predict(
            np.array(prompts.points, dtype=np.float32).reshape(-1, 2) if prompts.points else None,
            np.array(prompts.labels) if prompts.points else None,
            np.array(prompts.box) if prompts.box else None,
            mask_input=previous,
            multimask_output=tokens <= 2,
        )
        best = int(np.argmax(scores))
        assert masks[best].any(), f"step {step}: the reference mask is empty; pick another prompt"
        assert _iou(got.mask, masks[best]) >= 0.98, f"step {step}"
        assert got.score == pytest.approx(float(scores[best]), abs=1e-4)
        assert got.low_res is not None and got.low_res.shape == (1, 256, 256)
        np.testing.assert_allclose(got.low_res, low_res[best][None], atol=1e-3)
        previous = low_res[best][None]


def test_close_releases_the_model_and_the_onnxruntime_session(tiny_checkpoint: Path, tiny_predictor: Any) -> None:
    predictor = SamEncoderPredictor("vit_tiny", tiny_checkpoint, model=tiny_predictor.model)
    predictor.load()
    assert predictor.ready and predictor._low_res_decoder is not None and predictor.memory_stats() == {}
    predictor.close()
    assert not predictor.ready and predictor._low_res_decoder is None and predictor._dense_pe is None
    with pytest.raises(RuntimeError, match="not loaded"):
        predictor.model  # noqa: B018


def test_image_tokens_are_laid_out_once_per_embedding_and_kept_for_the_last_few() -> None:
    tokens = EmbeddingLayouts(tokens_of, kept=2)
    rng = np.random.default_rng(0)
    first, second, third = (rng.standard_normal((1, 256, 64, 64)).astype(np.float32) for _ in range(3))
    laid_out = tokens(first)
    np.testing.assert_array_equal(laid_out, first.reshape(1, 256, -1).transpose(0, 2, 1))
    assert laid_out.flags["C_CONTIGUOUS"] and laid_out.dtype == np.float32
    assert tokens(first) is laid_out  # the same embedding: not laid out again
    assert tokens(first.copy()) is not laid_out  # equal values, another array: keyed by the array, not by value
    tokens(second), tokens(third)  # the two most recent are kept: `first` (and its copy) fall out
    assert tokens(first) is not laid_out
    np.testing.assert_array_equal(tokens(first), laid_out)


def test_image_tokens_do_not_keep_a_dropped_embedding_or_its_tokens() -> None:
    tokens = EmbeddingLayouts(tokens_of, kept=4)
    rng = np.random.default_rng(1)
    dropped = rng.standard_normal((1, 256, 64, 64)).astype(np.float32)
    kept = rng.standard_normal((1, 256, 64, 64)).astype(np.float32)
    laid_out = weakref.ref(tokens(dropped))
    watch = weakref.ref(dropped)
    del dropped
    gc.collect()
    assert watch() is None  # the decoder's tokens do not hold the service's embedding alive
    tokens(kept)  # the next new embedding: the dead one's tokens go
    assert len(tokens) == 1 and laid_out() is None
    assert tokens(kept) is tokens(kept)
