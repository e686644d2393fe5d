"""SAM's attention with decomposed relative positions, on `scaled_dot_product_attention`.

Upstream (`segment_anything.modeling.image_encoder.Attention`) materialises the scores *and* the full
rel-pos bias, (B*heads, N, N) with N = 4096 in the global blocks, then adds, softmaxes and multiplies in
separate passes: several GB of memory traffic per global block. Here the bias is built one band of query rows
at a time (`band_rows` rows of the token grid), at most `MASK_BUDGET_BYTES` per band, and handed to SDPA as
its additive mask; the fused kernel (flash on CPU, memory-efficient on CUDA) never writes the scores.

Same function: softmax(q*scale @ k^T + rel_h + rel_w) @ v with rel_h/rel_w from the *unscaled* q, exactly
as `add_decomposed_rel_pos`. Reuses the upstream module's parameters (no copy), so swapping its Linear
layers for int8 ones afterwards applies here too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention, get_rel_pos
from torch import nn

# Largest bias band handed to SDPA at once, per device type: bands keep it in cache-friendly slices on the
# CPU and bound the GPU's transient memory at batch 32 (a dense ViT-H global bias there would be
# 32 x 16 x 4096^2 x 2 B = 17 GB) while keeping each SDPA call large enough to fill the GPU.
MASK_BUDGET_BYTES = 32 * 1024 * 1024
MASK_BUDGET_BYTES_BY_DEVICE = {"cpu": MASK_BUDGET_BYTES, "cuda": 1024 * 1024 * 1024}


class FusedRelPosAttention(nn.Module):
    """Drop-in replacement of one upstream `Attention` (same parameters, same input/output layout)."""

    def __init__(self, attn: Attention, mask_budget_bytes: int = MASK_BUDGET_BYTES) -> None:
        super().__init__()
        self.num_heads = int(attn.num_heads)
        self.scale = float(attn.scale)
        self.qkv = attn.qkv
        self.proj = attn.proj
        self.use_rel_pos = attn.use_rel_pos
        if self.use_rel_pos:
            self.rel_pos_h = attn.rel_pos_h
            self.rel_pos_w = attn.rel_pos_w
        self.mask_budget_bytes = mask_budget_bytes

    def band_rows(self, batch: int, height: int, width: int, element_size: int) -> int:
        """Query rows of the token grid per SDPA call so that one bias band fits the budget."""
        per_row = batch * self.num_heads * width * height * width * element_size
        return max(1, min(height, self.mask_budget_bytes // max(1, per_row)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, _ = x.shape
        tokens = height * width
        # One copy into (3, B, heads, N, head_dim) here; without it SDPA copies the strided k and v once per band
        # (measured: a fifth of the CPU time of ViT-B in aten::copy_).
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).contiguous()
        q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim), contiguous
        if not self.use_rel_pos:
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            out = self._rel_pos_attention(q, k, v, height, width)
        out = out.view(batch, self.num_heads, height, width, -1).permute(0, 2, 3, 1, 4)
        out = out.reshape(batch, height, width, -1)
        return torch.as_tensor(self.proj(out))

    def _rel_pos_attention(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, height: int, width: int
    ) -> torch.Tensor:
        batch, heads, _, dim = q.shape
        rel_h_table = get_rel_pos(height, height, self.rel_pos_h).to(q.dtype)  # (q_h, k_h, dim)
        rel_w_table = get_rel_pos(width, width, self.rel_pos_w).to(q.dtype)  # (q_w, k_w, dim)
        grid_q = q.reshape(batch, heads, height, width, dim)
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid_q, rel_h_table)  # (B, heads, q_h, q_w, k_h)
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid_q, rel_w_table)  # (B, heads, q_h, q_w, k_w)
        rows = self.band_rows(batch, height, width, q.element_size())
        bands = []
        for top in range(0, height, rows):
            bottom = min(height, top + rows)
            # Written into a row-major buffer: a plain sum of the sliced views comes out strided, and reshaping
            # it for SDPA would copy the whole band again (a quarter of a global block's CPU time, measured).
            bias = q.new_empty((batch, heads, bottom - top, width, height, width))
            torch.add(rel_h[:, :, top:bottom, :, :, None], rel_w[:, :, top:bottom, :, None, :], out=bias)
            bias = bias.view(batch, heads, (bottom - top) * width, height * width)
            band_q = grid_q[:, :, top:bottom].reshape(batch, heads, (bottom - top) * width, dim)
            bands.append(F.scaled_dot_product_attention(band_q, k, v, attn_mask=bias, scale=self.scale))
        return bands[0] if len(bands) == 1 else torch.cat(bands, dim=2)


def fuse_attention(encoder: nn.Module, mask_budget_bytes: int = MASK_BUDGET_BYTES) -> int:
    """Replace every upstream `Attention` under `encoder` in place; returns how many were replaced."""
    replaced = 0
    for module in list(encoder.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, Attention):
                setattr(module, name, FusedRelPosAttention(child, mask_budget_bytes))
                replaced += 1
    return replaced
