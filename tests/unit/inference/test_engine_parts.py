"""The engine's parts one by one: plan resolution (pure), banded SDPA attention, int8 Linear layers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from sam_inference.settings import InferenceSettings
from sam_inference.torch_models.engine import int8 as int8_module
from sam_inference.torch_models.engine.attention import FusedRelPosAttention, fuse_attention
from sam_inference.torch_models.engine.int8 import DynamicInt8Linear, quantize_linears, weight_levels
from sam_inference.torch_models.engine.plan import (
    CpuFeatures,
    EnginePlan,
    derive_cpu_precision,
    derive_cuda_precision,
    derive_plan,
    read_cpu_flags,
)
from sam_inference.torch_models.factory import build_predictor
from segment_anything.modeling.image_encoder import Attention


def test_cpu_flags_are_read_from_the_first_processor(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    flags = read_cpu_flags(cpuinfo)
    assert flags == {"fpu", "avx512f", "avx512_vnni"}
    assert CpuFeatures.from_flags(flags) == CpuFeatures(vnni=True, native_bf16=False)
    assert read_cpu_flags(tmp_path / "missing") == set()


@pytest.mark.parametrize(
    ("flags", "int8_kernels", "expected"),
    [
        ({"avx512_vnni"}, True, "int8"),
        ({"avx_vnni", "avx512_bf16"}, True, "int8"),
        ({"avx512_vnni", "amx_bf16"}, False, "bfloat16"),
        ({"avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"}, True, "bfloat16"),  # AMX's bf16 beats VNNI's int8
        ({"avx512_bf16"}, True, "bfloat16"),
        ({"avx2"}, True, "float32"),
    ],
)
def test_cpu_auto_precision_follows_the_flags(flags: set[str], int8_kernels: bool, expected: str) -> None:
    assert derive_cpu_precision(CpuFeatures.from_flags(flags), int8_kernels) == expected


def test_plan_resolves_auto_and_rejects_precisions_without_kernels() -> None:
    assert derive_plan("auto", "auto", "cpu", "int8") == EnginePlan("fused", "int8", "cpu")
    assert derive_plan("torch", "float32", "cuda", "bfloat16") == EnginePlan("torch", "float32", "cuda")
    assert derive_plan("auto", "auto", "cuda", derive_cuda_precision(False)).precision == "float16"
    with pytest.raises(ValueError, match="float16 needs device cuda"):
        derive_plan("auto", "float16", "cpu", "int8")
    with pytest.raises(ValueError, match=r"int8 .* cpu only"):
        derive_plan("fused", "int8", "cuda", "bfloat16")
    with pytest.raises(ValueError, match="unknown engine"):
        derive_plan("onnx", "auto", "cpu", "int8")  # type: ignore[arg-type]
    assert derive_plan("openvino", "auto", "cpu", "int8") == EnginePlan("openvino", "int8", "cpu")
    with pytest.raises(ValueError, match="engine openvino runs on device cpu only"):
        derive_plan("openvino", "float32", "cuda", "bfloat16")
    assert derive_plan("openvino", "bfloat16", "cpu", "int8") == EnginePlan("openvino", "bfloat16", "cpu")
    with pytest.raises(ValueError, match="float16 needs device cuda"):
        derive_plan("openvino", "float16", "cpu", "int8")


def test_openvino_bfloat16_computes_from_the_float32_ir_with_the_bf16_hint(tmp_path: Path) -> None:
    from sam_inference.torch_models.engine import openvino_encoder

    checkpoint = tmp_path / "sam.pth"
    checkpoint.write_bytes(b"weights")
    key = openvino_encoder.ir_cache_key
    assert key(checkpoint, "vit_b", "bfloat16") == key(checkpoint, "vit_b", "float32")
    assert key(checkpoint, "vit_b", "int8") != key(checkpoint, "vit_b", "float32")


def test_auto_runs_openvino_on_the_cpu_only_where_its_ir_is_prepared() -> None:
    asked: list[str] = []

    def prepared_for(*precisions: str) -> Callable[[str], bool]:
        return lambda precision: asked.append(precision) or precision in precisions

    assert derive_plan("auto", "auto", "cpu", "int8", prepared_for("int8")) == EnginePlan("openvino", "int8", "cpu")
    assert derive_plan("auto", "float32", "cpu", "int8", prepared_for("float32")).engine == "openvino"
    assert derive_plan("auto", "auto", "cpu", "int8", prepared_for("float32")).engine == "fused"  # another IR
    assert asked == ["int8", "float32", "int8"]
    asked.clear()
    bf16 = EnginePlan("openvino", "bfloat16", "cpu")
    assert derive_plan("auto", "auto", "cpu", "bfloat16", prepared_for("bfloat16")) == bf16  # AMX: the f32 IR
    assert derive_plan("auto", "auto", "cpu", "bfloat16", prepared_for("float32", "int8")).engine == "fused"
    assert asked == ["bfloat16", "bfloat16"]
    asked.clear()
    assert derive_plan("auto", "auto", "cuda", "bfloat16", prepared_for("bfloat16")).engine == "fused"
    assert derive_plan("fused", "auto", "cpu", "int8", prepared_for("int8")).engine == "fused"  # asked for fused
    assert derive_plan("torch", "float32", "cpu", "int8", prepared_for("float32")).engine == "torch"
    assert asked == []  # only engine auto on the CPU, in a precision OpenVINO computes, looks for an IR


def test_settings_default_to_auto_and_reach_the_predictor(tmp_path: Path) -> None:
    settings = InferenceSettings(checkpoint_path=tmp_path / "x.pth", device="cpu")
    assert (settings.engine, settings.precision) == ("auto", "auto")
    predictor = build_predictor(settings.model_copy(update={"engine": "fused", "precision": "int8"}))
    assert (predictor.engine, predictor.precision) == ("fused", "int8")  # type: ignore[attr-defined]


def test_only_masks_mode_exports_the_onnxruntime_decoder_at_load(tmp_path: Path) -> None:
    settings = InferenceSettings(checkpoint_path=tmp_path / "x.pth", device="cpu")
    assert build_predictor(settings).mask_decoder == "torch"  # type: ignore[attr-defined]
    masks = build_predictor(settings.model_copy(update={"mode": "masks"}))
    assert masks.mask_decoder == "auto"  # type: ignore[attr-defined]


def _attention(size: int, heads: int = 4, dim: int = 64) -> Attention:
    torch.manual_seed(size)
    attn = Attention(dim, heads, use_rel_pos=True, rel_pos_zero_init=False, input_size=(size, size)).eval()
    with torch.no_grad():
        attn.rel_pos_h.normal_(0, 0.5)
        attn.rel_pos_w.normal_(0, 0.5)
    return attn


@pytest.mark.parametrize("budget", [1, 4096, 1 << 30])  # one row per band, a few bands, one band
def test_fused_attention_equals_upstream_in_any_number_of_bands(budget: int) -> None:
    attn = _attention(12)
    fused = FusedRelPosAttention(attn, mask_budget_bytes=budget)
    x = torch.randn(2, 12, 12, 64)
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), attn(x), rtol=0, atol=2e-5)
    rows = fused.band_rows(2, 12, 12, 4)
    assert rows == (1 if budget <= 4096 else 12)


def test_fused_attention_without_rel_pos_equals_upstream() -> None:
    attn = Attention(32, 2, use_rel_pos=False).eval()
    x = torch.randn(1, 5, 7, 32)
    with torch.inference_mode():
        torch.testing.assert_close(FusedRelPosAttention(attn)(x), attn(x), rtol=0, atol=1e-5)


def test_fuse_attention_replaces_every_attention_in_place() -> None:
    model = torch.nn.Sequential(_attention(4), torch.nn.Sequential(_attention(6)))
    assert fuse_attention(model) == 2
    assert not any(isinstance(m, Attention) for m in model.modules())


def test_int8_linear_stays_close_to_float32_for_any_leading_shape() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 40).eval()
    int8 = DynamicInt8Linear(linear)
    assert int8.levels == weight_levels()
    x = torch.randn(2, 3, 5, 96)
    with torch.inference_mode():
        got, want = int8(x), linear(x)
    assert got.shape == want.shape == (2, 3, 5, 40)
    assert not torch.equal(got, want)
    assert ((got - want).norm() / want.norm()).item() < 0.02


@pytest.mark.parametrize(("in_features", "out_features"), [(768, 3072), (3072, 768)])
def test_int8_linear_holds_vit_b_shapes_with_signed_activations_on_this_cpu(
    in_features: int, out_features: int
) -> None:
    # Without VNNI (AVX2-only CPUs) fbgemm sums u8 x s8 pairs in saturating int16: 8-bit weights gave 5.6-8.6 %
    # error on an AVX2 AMD EPYC, the 7-bit weights quantize_linears picks there 1.3-1.4 %.
    torch.manual_seed(0)
    linear = torch.nn.Linear(in_features, out_features).eval()
    model = torch.nn.Sequential(linear)
    x = torch.randn(1024, in_features)
    with torch.inference_mode():
        want = linear(x)
        quantize_linears(model)
        got = model(x)
    assert ((got - want).norm() / want.norm()).item() < 0.02


def test_quantize_linears_takes_7_bit_weights_only_without_vnni(monkeypatch: pytest.MonkeyPatch) -> None:
    def linears(features: CpuFeatures) -> list[DynamicInt8Linear]:
        monkeypatch.setattr(int8_module, "cpu_features", lambda: features)
        model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
        quantize_linears(model)
        return [m for m in model.modules() if isinstance(m, DynamicInt8Linear)]

    assert [m.levels for m in linears(CpuFeatures(vnni=True, native_bf16=False))] == [127, 127]
    assert [m.levels for m in linears(CpuFeatures(vnni=False, native_bf16=True))] == [63, 63]
    assert "63-level weights" in repr(linears(CpuFeatures(vnni=False, native_bf16=False))[0])


def test_an_int8_linear_made_directly_takes_the_cpus_safe_levels(monkeypatch: pytest.MonkeyPatch) -> None:
    # The default belongs to the layer, not only to quantize_linears: a direct caller on a CPU without VNNI
    # must not get the saturating 8-bit weights.
    linear = torch.nn.Linear(8, 4)
    for features, levels in ((CpuFeatures(vnni=True, native_bf16=False), 127), (CpuFeatures(False, False), 63)):
        monkeypatch.setattr(int8_module, "cpu_features", lambda features=features: features)
        assert features.int8_saturates is (levels == 63)
        assert DynamicInt8Linear(linear).levels == levels
        assert DynamicInt8Linear(linear, 127).levels == 127


def test_quantize_linears_counts_the_swapped_layers() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.GELU(), torch.nn.Sequential(torch.nn.Linear(8, 2)))
    assert quantize_linears(model) == 2
    assert sum(isinstance(m, DynamicInt8Linear) for m in model.modules()) == 2


def test_an_int8_ir_prepared_without_vnni_is_kept_apart_from_a_vnni_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without VNNI the IR's weights take 7 bits (NNCF's overflow fix): a shared model cache read by both kinds
    # of node must not hand one's IR to the other.
    from sam_inference.torch_models.engine import openvino_encoder

    checkpoint = tmp_path / "sam.pth"
    checkpoint.write_bytes(b"weights")

    def key(vnni: bool, precision: str) -> str:
        monkeypatch.setattr(openvino_encoder, "cpu_features", lambda: CpuFeatures(vnni=vnni, native_bf16=False))
        return openvino_encoder.ir_cache_key(checkpoint, "vit_b", precision)

    assert key(True, "int8") != key(False, "int8")
    assert key(True, "float32") == key(False, "float32")
