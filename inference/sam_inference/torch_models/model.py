"""SAM model construction: the real `sam_model_registry` variants plus the tiny test architecture.

Part of `torch_models`, the only package that imports torch and segment_anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from segment_anything.build_sam import _build_sam, sam_model_registry
from segment_anything.modeling import Sam

VARIANTS = ("vit_b", "vit_l", "vit_h", "vit_tiny")

# The tiny variant keeps SAM's real layer types, the 1024 px input, the 256x64x64 embedding and the full
# prompt encoder / mask decoder; only the ViT is shrunk (about 5 M parameters, ~0.5 s per image on a CPU).
TINY_ENCODER = {
    "encoder_embed_dim": 64,
    "encoder_depth": 2,
    "encoder_num_heads": 2,
    "encoder_global_attn_indexes": [1],
}


def build_sam(variant: str) -> Sam:
    """Build an untrained SAM of `variant` (eval mode, CPU, float32)."""
    if variant == "vit_tiny":
        sam = _build_sam(checkpoint=None, **TINY_ENCODER)
    elif variant in ("vit_b", "vit_l", "vit_h"):
        sam = sam_model_registry[variant](checkpoint=None)
    else:
        raise ValueError(f"unknown model variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    return sam.eval()


def load_state_dict(path: Path) -> dict[str, Any]:
    """Read a checkpoint saved as a plain state dict (weights only, mapped to CPU)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


def load_sam(variant: str, checkpoint: Path) -> Sam:
    """Build `variant` and load `checkpoint` into it; a shape mismatch names the wrong variant."""
    sam = build_sam(variant)
    try:
        sam.load_state_dict(load_state_dict(checkpoint))
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {checkpoint} does not fit variant {variant!r}: {exc}") from exc
    return sam.eval()
