"""Every encoder engine/precision computes SAM's embedding (issue 13), on generated scenes, on the CPU:
- the float32 paths equal `SamPredictor.get_image_embedding()` within 1e-5;
- every faster path keeps cosine >= 0.99 per embedding against float32;
- masks decoded from each path's embedding reach IoU >= 0.98 against the float32 masks, click by click.
Tiny model for every path, random-weight ViT-B (rel-pos tables randomised: upstream zero-initialises them)
for the float32 path, both int8 paths (fused and openvino) and, where the CPU computes bfloat16, openvino's.

int8 on a CPU without VNNI: its int8 products saturate, so the weights take 7 bits (`engine/int8.py`, NNCF's
overflow fix), and ViT-B's masks reached IoU 0.9779 (fused) and 0.9781 (openvino) against float32 on an AVX2-only
AMD EPYC, under the 0.98 that VNNI CPUs hold. `auto` does not pick int8 there (test_engine_parts); where an explicit
int8 runs on such a CPU the ViT-B tests hold it to 0.97 (the 8-bit weights that saturate gave cosine 0.9875 on
the tiny model, 0.9707 IoU on ViT-B with `reduce_range`).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sam_inference.predictor import Embedding, Prompts
from sam_inference.torch_models.engine import EngineChoice, PrecisionChoice
from sam_inference.torch_models.engine.openvino_encoder import ReleasedImageEncoder
from sam_inference.torch_models.engine.plan import cpu_features
from sam_inference.torch_models.model import load_sam
from sam_inference.torch_models.sam_predictor import SamEncoderPredictor
from sam_inference.torch_models.tiny import build_random_sam
from segment_anything import SamPredictor
from segment_anything.modeling import Sam
from unit.inference.scenes import Scene, make_scene

MIN_IOU = 0.98
# ViT-B's int8 masks where the CPU has no VNNI (see the module's docstring); 0.98 with VNNI.
VIT_B_INT8_MIN_IOU = 0.97 if cpu_features().int8_saturates else MIN_IOU
FAST_CPU_PATHS: list[tuple[EngineChoice, PrecisionChoice]] = [
    ("openvino", "int8"),
    ("openvino", "bfloat16"),  # float32 where the CPU has neither AVX512_BF16 nor AMX (a warning says so)
    ("fused", "int8"),
    ("torch", "int8"),
    ("fused", "bfloat16"),
    ("torch", "bfloat16"),
]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _predictor(model: Sam, engine: EngineChoice, precision: PrecisionChoice) -> SamEncoderPredictor:
    checkpoint = Path("unused.pth")  # the model is given
    # The mask decoder pinned to float32 onnxruntime: the masks compare encoders (the OpenVINO decoder's own
    # fidelity is test_openvino_mask_decoder's).
    predictor = SamEncoderPredictor(
        "vit_b",
        checkpoint,
        device="cpu",
        precision=precision,
        engine=engine,
        model=copy.deepcopy(model),
        mask_decoder="onnxruntime",
    )
    predictor.load()
    return predictor


def _embed(predictor: SamEncoderPredictor, scene: Scene) -> np.ndarray:
    return predictor.embed_batch([predictor.preprocess(scene.image)])[0].image_embed


def _upstream(model: Sam, scene: Scene) -> np.ndarray:
    reference = SamPredictor(model)
    reference.set_image(scene.image)
    return reference.get_image_embedding().numpy()


def _masks(decoder: SamEncoderPredictor, embedding: np.ndarray, scene: Scene) -> list[np.ndarray]:
    height, width = scene.image.shape[:2]
    prompts = [Prompts(points=(click,), labels=(1,)) for click in scene.clicks[:4]]
    prompts.append(Prompts(points=scene.clicks[:2], labels=(1, 0)))
    return [decoder.decode_masks(Embedding(embedding, height, width), p).mask for p in prompts]


def _assert_masks_agree(
    decoder: SamEncoderPredictor, ours: np.ndarray, fp32: np.ndarray, scene: Scene, min_iou: float = MIN_IOU
) -> None:
    reference_masks = _masks(decoder, fp32, scene)
    assert any(0 < m.mean() < 1 for m in reference_masks), "degenerate scene: every mask empty or full"
    for got, want in zip(_masks(decoder, ours, scene), reference_masks, strict=True):
        assert _iou(got, want) >= min_iou


@pytest.fixture(scope="module")
def tiny_model(tiny_checkpoint: Path) -> Sam:
    return load_sam("vit_tiny", tiny_checkpoint)


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    sizes = ((640, 480), (500, 750), (1024, 576))
    return [make_scene(seed, width, height) for seed, (width, height) in enumerate(sizes)]


@pytest.fixture(scope="module")
def tiny_fp32(tiny_model: Sam, scenes: list[Scene]) -> list[np.ndarray]:
    return [_upstream(tiny_model, scene) for scene in scenes]


@pytest.fixture(scope="module")
def tiny_decoder(tiny_model: Sam) -> SamEncoderPredictor:
    return _predictor(tiny_model, "torch", "float32")


@pytest.mark.parametrize("engine", ["torch", "fused"])
def test_float32_paths_equal_sampredictor_get_image_embedding(
    tiny_model: Sam, scenes: list[Scene], tiny_fp32: list[np.ndarray], engine: EngineChoice
) -> None:
    predictor = _predictor(tiny_model, engine, "float32")
    for scene, expected in zip(scenes, tiny_fp32, strict=True):
        np.testing.assert_allclose(_embed(predictor, scene), expected, rtol=0, atol=1e-5)


def test_openvino_float32_is_the_upstream_function(
    tiny_model: Sam, scenes: list[Scene], tiny_fp32: list[np.ndarray]
) -> None:
    # oneDNN's kernels sum in another order than torch's: the same function to float32 rounding, not bit for bit.
    predictor = _predictor(tiny_model, "openvino", "float32")
    for scene, expected in zip(scenes, tiny_fp32, strict=True):
        ours = _embed(predictor, scene)
        np.testing.assert_allclose(ours, expected, rtol=0, atol=5e-5)
        assert _cosine(ours, expected) >= 0.999999


@pytest.mark.parametrize(("engine", "precision"), FAST_CPU_PATHS)
def test_faster_paths_keep_cosine_and_masks_on_the_tiny_model(
    tiny_model: Sam,
    tiny_decoder: SamEncoderPredictor,
    scenes: list[Scene],
    tiny_fp32: list[np.ndarray],
    engine: EngineChoice,
    precision: PrecisionChoice,
) -> None:
    predictor = _predictor(tiny_model, engine, precision)
    assert not isinstance(predictor.model.image_encoder, ReleasedImageEncoder)  # a given model stays whole
    for scene, expected in zip(scenes, tiny_fp32, strict=True):
        ours = _embed(predictor, scene)
        assert not np.array_equal(ours, expected)  # the path really computed differently
        assert _cosine(ours, expected) >= 0.99
        _assert_masks_agree(tiny_decoder, ours, expected, scene)


def test_openvino_keeps_its_prepared_encoder_beside_the_checkpoint_and_reads_it_back(
    tiny_checkpoint: Path, tmp_path: Path, scenes: list[Scene]
) -> None:
    checkpoint = tmp_path / "sam_vit_tiny.pth"
    checkpoint.write_bytes(tiny_checkpoint.read_bytes())
    first = SamEncoderPredictor("vit_tiny", checkpoint, device="cpu", precision="int8", engine="openvino")
    first.load()
    stored = sorted(p.name for p in (tmp_path / "openvino").iterdir())
    assert len(stored) == 2 and {Path(n).suffix for n in stored} == {".xml", ".bin"}, stored
    expected = _embed(first, scenes[0])
    # A micro-batch runs image by image (static shapes) and gives each image's own embedding.
    pair = first.embed_batch([first.preprocess(scenes[0].image), first.preprocess(scenes[1].image)])
    np.testing.assert_array_equal(pair[0].image_embed, expected)
    np.testing.assert_array_equal(pair[1].image_embed, _embed(first, scenes[1]))
    second = SamEncoderPredictor("vit_tiny", checkpoint, device="cpu", precision="int8", engine="openvino")
    calls: list[object] = []
    from sam_inference.torch_models.engine import openvino_encoder

    original = openvino_encoder.quantize
    openvino_encoder.quantize = lambda *args: calls.append(args) or original(*args)  # type: ignore[assignment]
    try:
        second.load()
    finally:
        openvino_encoder.quantize = original
    assert calls == []  # read back, not quantized again
    np.testing.assert_array_equal(_embed(second, scenes[0]), expected)
    # Both hold the IR read from its file, so the PyTorch encoder's weights were dropped (OpenVINO has its own).
    for predictor in (first, second):
        assert isinstance(predictor.model.image_encoder, ReleasedImageEncoder)
        assert list(predictor.model.image_encoder.parameters()) == []
    # What was quantized: every Linear layer's input passes a FakeQuantize; attention's q·k and attn·v do not.
    import openvino

    ir = openvino.Core().read_model(tmp_path / "openvino" / stored[1])
    matmuls = {op.get_friendly_name(): op for op in ir.get_ops() if op.get_type_name() == "MatMul"}
    linears = [name for name in matmuls if "aten::linear" in name]
    attention = [name for name in matmuls if "aten::matmul" in name]
    assert len(linears) == 4 * len(attention) // 2 > 0  # qkv, proj, lin1, lin2 and two products per block
    for name, op in matmuls.items():
        quantized = op.input_value(0).get_node().get_type_name() == "FakeQuantize"
        assert quantized == (name in linears), name
    key = openvino_encoder.ir_cache_key(checkpoint, "vit_tiny", "int8")
    assert stored[0] == f"sam-encoder-{key}.bin"
    stat = checkpoint.stat()
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a replaced checkpoint
    assert openvino_encoder.ir_cache_key(checkpoint, "vit_tiny", "int8") != key
    assert openvino_encoder.ir_cache_key(checkpoint, "vit_tiny", "float32") != key


def test_int8_path_swaps_every_encoder_linear_and_keeps_the_decoder(tiny_model: Sam) -> None:
    predictor = _predictor(tiny_model, "fused", "int8")
    encoder_linears = [m for m in predictor.model.image_encoder.modules() if isinstance(m, torch.nn.Linear)]
    decoder_linears = [m for m in predictor.model.mask_decoder.modules() if isinstance(m, torch.nn.Linear)]
    assert encoder_linears == [] and decoder_linears != []


@pytest.fixture(scope="module")
def vit_b() -> Sam:
    return build_random_sam("vit_b", seed=1)


@pytest.mark.slow
def test_vit_b_float32_equals_upstream_and_int8_keeps_cosine_and_masks(vit_b: Sam) -> None:
    scene = make_scene(7, 800, 600)
    expected = _upstream(vit_b, scene)
    fused = _predictor(vit_b, "fused", "float32")
    np.testing.assert_allclose(_embed(fused, scene), expected, rtol=0, atol=1e-5)
    del fused
    int8 = _predictor(vit_b, "fused", "int8")
    ours = _embed(int8, scene)
    assert _cosine(ours, expected) >= 0.99
    _assert_masks_agree(_predictor(vit_b, "torch", "float32"), ours, expected, scene, VIT_B_INT8_MIN_IOU)


@pytest.mark.slow
# Preparing ViT-B's int8 IR (calibration included) took 417 s alone on an idle 2-core AMX Xeon, and ran past the
# default 600 s while the same machine was slower (a CI run, 2026-12-07): the default leaves it no margin.
@pytest.mark.timeout(1200)
def test_vit_b_openvino_int8_keeps_cosine_and_masks(vit_b: Sam) -> None:
    scene = make_scene(7, 800, 600)
    expected = _upstream(vit_b, scene)
    ours = _embed(_predictor(vit_b, "openvino", "int8"), scene)
    assert _cosine(ours, expected) >= 0.99
    _assert_masks_agree(_predictor(vit_b, "torch", "float32"), ours, expected, scene, VIT_B_INT8_MIN_IOU)


@pytest.mark.slow
@pytest.mark.skipif(not cpu_features().native_bf16, reason="needs AVX512_BF16 or AMX (else OpenVINO computes float32)")
def test_vit_b_openvino_bfloat16_computes_in_bf16_and_keeps_cosine_and_masks(vit_b: Sam) -> None:
    import openvino

    scene = make_scene(7, 800, 600)
    expected = _upstream(vit_b, scene)
    predictor: Any = _predictor(vit_b, "openvino", "bfloat16")
    assert predictor._encoder._compiled.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.bf16
    ours = _embed(predictor, scene)
    assert _cosine(ours, expected) >= 0.99
    _assert_masks_agree(_predictor(vit_b, "torch", "float32"), ours, expected, scene)


def test_auto_resolves_at_load_to_the_plan_the_hardware_supports(
    tiny_model: Sam, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sam_inference.torch_models.engine import plan

    monkeypatch.setattr(plan, "cpu_features", lambda: plan.CpuFeatures(vnni=True, native_bf16=False))
    predictor: Any = _predictor(tiny_model, "auto", "auto")
    assert predictor.plan == plan.EnginePlan("fused", "int8", "cpu")
    monkeypatch.setattr(plan, "cpu_features", lambda: plan.CpuFeatures(vnni=False, native_bf16=False))
    assert _predictor(tiny_model, "auto", "auto").plan == plan.EnginePlan("fused", "float32", "cpu")
