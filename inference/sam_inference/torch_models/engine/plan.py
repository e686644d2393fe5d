"""Which encoder engine and precision a process runs: `auto` resolved against the device it finds.

Pure decisions plus the hardware facts they need (CPU flags, CUDA bf16 support). `resolve_plan` is what
`sam-inference serve` calls; the bench and GPU scripts call it too, so they measure what the service runs.

Why these defaults (measured on a 2-core CI CPU, an AVX-512 VNNI Xeon without AVX512_BF16, ViT-B shapes; a later
CI machine also has AVX512_BF16 and AVX512_FP16: these rules still pick int8 there, bf16 not re-measured):
fp32 GEMM ~160-220 GFLOP/s, bf16 GEMM ~55-65 GFLOP/s (emulated: 3x *slower*), dynamic int8 GEMM (fbgemm,
VNNI) ~300-580 GOP/s. So a CPU with VNNI gets int8 Linear layers, one with native bf16 (AVX512_BF16 or AMX)
but no VNNI gets bf16, any other fp32. A GPU gets bf16 where it has it, else fp16. `bench/bench_engine.py`
re-measures this on the machine at hand.

On an AVX2-only CPU (a 2-core AMD EPYC: no AVX-512, no VNNI) random-weight ViT-B took 19.3 s per image in
torch/float32, 8.5 s fused/float32 (x2.28, exact), 6.8 s openvino/float32 (x2.85, exact) and 6.6 s fused/int8
(x2.93, cosine 0.9996). There the int8 products saturate (int16 sums, `int8.py`), so int8 takes 7-bit weights,
and its masks reached IoU 0.978 against float32, under the 0.98 bound: `auto` keeps float32 there (openvino
where its IR is prepared, else fused); an explicit `int8` runs, with a warning in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

Engine = Literal["torch", "fused", "openvino"]
EngineChoice = Literal["auto", "torch", "fused", "openvino"]
Precision = Literal["float32", "bfloat16", "float16", "int8"]
PrecisionChoice = Literal["auto", "float32", "bfloat16", "float16", "int8"]

ENGINES: tuple[EngineChoice, ...] = ("auto", "torch", "fused", "openvino")
PRECISIONS: tuple[PrecisionChoice, ...] = ("auto", "float32", "bfloat16", "float16", "int8")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnginePlan:
    """A resolved choice: `engine` is `torch` (upstream modules), `fused` (SDPA attention, blockwise rel-pos) or
    `openvino` (the encoder converted to OpenVINO, CPU); `precision` is the compute precision of the encoder (the
    embedding is float32 either way)."""

    engine: Engine
    precision: Precision
    device: str

    def describe(self) -> str:
        return f"{self.engine}/{self.precision} on {self.device}"


@dataclass(frozen=True)
class CpuFeatures:
    """The x86 flags that decide the CPU precision (and, `amx_bf16`, the masks-mode decoder's runtime)."""

    vnni: bool
    native_bf16: bool
    amx_bf16: bool = False

    @classmethod
    def from_flags(cls, flags: set[str]) -> CpuFeatures:
        return cls(
            vnni=bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"}),
            native_bf16=bool(flags & {"avx512_bf16", "amx_bf16"}),
            amx_bf16="amx_bf16" in flags,
        )

    @property
    def int8_saturates(self) -> bool:
        """Whether int8 products add in saturating int16 pairs here (`vpmaddubsw`: no VNNI), so int8 weights
        must keep to 7 bits (`int8.weight_levels`, OpenVINO's overflow fix and its IR key)."""
        return not self.vnni


def read_cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The `flags` of the first processor in /proc/cpuinfo (empty where it does not exist)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


@cache
def cpu_features() -> CpuFeatures:
    return CpuFeatures.from_flags(read_cpu_flags())


def derive_cpu_precision(features: CpuFeatures, int8_kernels: bool) -> Precision:
    """The fastest CPU precision that holds fidelity (cosine >= 0.99, tests/unit/inference/test_engine_*).

    AMX first: its bf16 tiles beat VNNI's int8 on ViT-B by about x2 (bench/README, bench_engine.py on a 2-core
    AMX Xeon: fused/bfloat16 1.84 s against fused/int8 3.79 s, openvino/bfloat16 1.00 s against openvino/int8
    1.99 s), at a higher cosine (0.99995 against 0.99982)."""
    if features.amx_bf16:
        return "bfloat16"
    if int8_kernels and not features.int8_saturates:
        return "int8"
    if features.native_bf16:
        return "bfloat16"
    return "float32"


def derive_cuda_precision(bf16_supported: bool) -> Precision:
    return "bfloat16" if bf16_supported else "float16"


def derive_plan(
    engine: EngineChoice,
    precision: PrecisionChoice,
    device: str,
    auto_precision: Precision,
    openvino_prepared: Callable[[Precision], bool] | None = None,
) -> EnginePlan:
    """Resolve `auto` and reject combinations no kernel exists for (fp16 on CPU, int8 on CUDA).

    Engine `auto` is `fused`, except on the CPU where `openvino_prepared(precision)` says the checkpoint's
    OpenVINO IR for that precision is already prepared (the `prepare-encoder` init container, or an earlier
    start, put it in the model cache): then `openvino`, the fastest CPU engine (bench/README, ViT-B on an AMX Xeon:
    openvino/bfloat16 from the float32 IR x10.99 torch float32, against x5.96 for fused/bfloat16), ready in seconds
    instead of minutes of preparation."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    chosen: Precision = auto_precision if precision == "auto" else precision
    if chosen == "float16" and device != "cuda":
        raise ValueError("precision float16 needs device cuda (use bfloat16, int8 or float32 on cpu)")
    if chosen == "int8" and device != "cpu":
        raise ValueError("precision int8 (dynamic int8 Linear layers) runs on device cpu only")
    # From here on a CPU precision is float32, bfloat16 or int8: OpenVINO computes each of them.
    if engine == "openvino" and device != "cpu":
        raise ValueError("engine openvino runs on device cpu only (use auto, torch or fused on cuda)")
    if engine == "auto":
        ready = device == "cpu" and openvino_prepared is not None and openvino_prepared(chosen)
        return EnginePlan(engine="openvino" if ready else "fused", precision=chosen, device=device)
    return EnginePlan(engine=engine, precision=chosen, device=device)


def int8_kernels_available() -> bool:
    """fbgemm/x86 dynamic-quantised Linear kernels exist in this torch build."""
    import torch

    return bool({"x86", "fbgemm"} & set(torch.backends.quantized.supported_engines))


def resolve_plan(
    engine: EngineChoice,
    precision: PrecisionChoice,
    device: str,
    openvino_prepared: Callable[[Precision], bool] | None = None,
) -> EnginePlan:
    """`derive_plan` with `auto` taken from the hardware this process runs on."""
    if device == "cuda":
        import torch

        auto = derive_cuda_precision(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    else:
        int8_kernels = engine == "openvino" or int8_kernels_available()
        auto = derive_cpu_precision(cpu_features(), int8_kernels) if precision == "auto" else "float32"
    plan = derive_plan(engine, precision, device, auto, openvino_prepared)
    if plan.engine == "openvino" and plan.precision == "bfloat16" and not cpu_features().native_bf16:
        log.warning(
            "precision bfloat16 on a CPU without native bfloat16 (AVX512_BF16 or AMX): OpenVINO computes float32"
        )
    if plan.precision == "int8" and cpu_features().int8_saturates:
        log.warning(
            "precision int8 on a CPU without VNNI: its int8 products saturate, so the weights take 7 bits and "
            "masks lose fidelity (bench/README, 'An AVX2-only CPU'); auto runs float32 here"
        )
    return plan
