"""Dynamic int8 Linear layers for the CPU (fbgemm/x86 kernels): weights int8 per output channel,
activations quantised per call, fp32 in and out.

The Linear layers are 75 % of ViT-B's FLOPs and run 2-2.6x faster this way on a VNNI CPU than in fp32.
The weights are quantised once, symmetric per output channel (finer than `quantize_dynamic`'s default
per-tensor scale), and activations use the full 8-bit range (`reduce_range=False`).

With VNNI, `vpdpbusd` accumulates the u8 x s8 products in int32. Without it (AVX2, or AVX-512 without VNNI)
fbgemm adds pairs of products in saturating int16 (`vpmaddubsw`): 2 x 255 x 127 overflows, and on an AVX2-only
AMD EPYC a 768->3072 layer fed Gaussian activations was off by 8.6 % (relative norm), a 96->40 layer by 13 %.
There the weights take 7 bits (-63..63: 2 x 255 x 63 fits), NNCF's "overflow fix": 1.2-1.4 % on the same
layers, against 1.9-2.4 % for `reduce_range` (7-bit activations, `quantize_dynamic`'s guard), since the
per-channel weights lose less to the halved range than the per-call activations do.

torch marks its quantised-tensor constructors deprecated (a UserWarning), though the kernels are the
supported x86 CPU path in this torch; the warning is silenced only around the one-time weight packing.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from .plan import cpu_features

FULL_WEIGHT_LEVELS = 127  # int8's symmetric range, where the CPU accumulates in int32 (VNNI)
OVERFLOW_SAFE_WEIGHT_LEVELS = 63  # 7 bits: a pair of u8 x s7 products fits fbgemm's int16 sums (no VNNI)


def weight_levels() -> int:
    """The symmetric weight range this CPU's int8 kernels take without overflow."""
    return OVERFLOW_SAFE_WEIGHT_LEVELS if cpu_features().int8_saturates else FULL_WEIGHT_LEVELS


def _pack(linear: nn.Linear, levels: int) -> Any:
    weight = linear.weight.detach().float()
    scales = (weight.abs().amax(dim=1) / levels).clamp_min(1e-12).double()
    zero_points = torch.zeros(weight.shape[0], dtype=torch.long)
    bias = None if linear.bias is None else linear.bias.detach().float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        qweight = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
        return torch.ops.quantized.linear_prepack(qweight, bias)


class DynamicInt8Linear(nn.Module):
    """`linear`'s function with int8 weights and per-call int8 activations (inference only, CPU). `levels`: the
    weights' symmetric range, by default what this CPU takes without overflow (`weight_levels`)."""

    def __init__(self, linear: nn.Linear, levels: int | None = None) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.levels = weight_levels() if levels is None else levels
        self._packed = _pack(linear, self.levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1]).float().contiguous()
        out = torch.ops.quantized.linear_dynamic(flat, self._packed, False)
        return torch.as_tensor(out).reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        bits = "8-bit" if self.levels == FULL_WEIGHT_LEVELS else f"{self.levels}-level"
        return f"in_features={self.in_features}, out_features={self.out_features}, {bits} weights per channel"


def quantize_linears(module: nn.Module, levels: int | None = None) -> int:
    """Replace every `nn.Linear` under `module` in place; returns how many were replaced. `levels`: the weights'
    symmetric range, by default what this CPU takes without overflow (`weight_levels`)."""
    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, DynamicInt8Linear(child, levels))
                replaced += 1
    return replaced
