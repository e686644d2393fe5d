"""The encoder a plan runs: upstream `ImageEncoderViT` prepared for its engine and precision.

`build_encoder` takes SAM's normalised, padded NCHW float32 batch and returns float32 (B, 256, 64, 64), like
`Sam.image_encoder`. It modifies the encoder it is given in place (no second copy of the weights):
- `torch` engine: the upstream modules; bf16/fp16 under autocast (what the service always did), int8 swaps
  the Linear layers;
- `fused` engine: attention on SDPA with the rel-pos bias in bands (`attention.py`); bf16/fp16 cast the
  weights once (no per-call autocast casts) and keep the neck (two convs + LayerNorm2d) in float32; int8
  swaps the Linear layers and keeps everything else float32.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
from segment_anything.modeling.image_encoder import ImageEncoderViT
from torch import nn

from .attention import MASK_BUDGET_BYTES, MASK_BUDGET_BYTES_BY_DEVICE, fuse_attention
from .int8 import quantize_linears
from .plan import EnginePlan

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class PreparedEncoder(nn.Module):
    """`ImageEncoderViT.forward` with the plan's precision handling; float32 in, float32 out."""

    def __init__(self, encoder: ImageEncoderViT, plan: EnginePlan) -> None:
        super().__init__()
        self.encoder = encoder
        self.plan = plan
        self.compute_dtype = DTYPES.get(plan.precision, torch.float32)
        self.autocast = plan.engine == "torch" and self.compute_dtype != torch.float32

    def _autocast(self) -> Any:
        if not self.autocast:
            return nullcontext()
        return torch.autocast(device_type=torch.device(self.plan.device).type, dtype=self.compute_dtype)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        encoder = self.encoder
        if self.plan.engine == "torch":
            with self._autocast():
                return torch.as_tensor(encoder(images)).float()
        x = encoder.patch_embed(images.to(self.compute_dtype))
        if encoder.pos_embed is not None:
            x = x + encoder.pos_embed
        for block in encoder.blocks:
            x = block(x)
        return torch.as_tensor(encoder.neck(x.float().permute(0, 3, 1, 2)))


def build_encoder(encoder: ImageEncoderViT, plan: EnginePlan) -> PreparedEncoder:
    """Prepare `encoder` (in place) for `plan` and move it to the plan's device (torch and fused engines; the
    openvino engine is `openvino_encoder.build_openvino_encoder`)."""
    if plan.engine == "openvino":
        raise ValueError("build_encoder prepares the torch and fused engines; openvino: build_openvino_encoder")
    encoder = encoder.eval()
    if plan.engine == "fused":
        device_type = torch.device(plan.device).type
        fuse_attention(encoder, MASK_BUDGET_BYTES_BY_DEVICE.get(device_type, MASK_BUDGET_BYTES))
    if plan.precision == "int8":
        quantize_linears(encoder)
    elif plan.engine == "fused" and plan.precision in ("bfloat16", "float16"):
        dtype = DTYPES[plan.precision]
        encoder.patch_embed.to(dtype)
        encoder.blocks.to(dtype)
        if encoder.pos_embed is not None:
            encoder.pos_embed.data = encoder.pos_embed.data.to(dtype)
    prepared = PreparedEncoder(encoder, plan)
    return prepared.to(plan.device).eval()
