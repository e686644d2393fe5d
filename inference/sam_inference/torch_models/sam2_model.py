"""SAM 2.1 model construction with Meta's `sam2` package: its Hydra configs, `build_sam2`, its checkpoint format.

Variants map to the package's own SAM 2.1 configs (sam2-and-prefetch.md §A1). `hiera_micro` is the test and
demo architecture: the `hiera_t` config with a shrunken trunk (and memory modules, which images never run),
built by the same config machinery, so every layer type, the 1024 px input and the three feature shapes
([1,256,64,64], [1,32,256,256], [1,64,128,128]) are the real ones.

Checkpoints are what Meta publishes, `{"model": state_dict}`, loaded strictly by `build_sam2` itself.
"""

from __future__ import annotations

from pathlib import Path

from sam2.build_sam import build_sam2
from sam2.modeling.sam2_base import SAM2Base

CONFIGS = {
    "hiera_t": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "hiera_s": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "hiera_b+": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "hiera_l": "configs/sam2.1/sam2.1_hiera_l.yaml",
    "hiera_micro": "configs/sam2.1/sam2.1_hiera_t.yaml",
}
VARIANTS = tuple(CONFIGS)

# Hiera with 5 blocks of 16..128 channels (global attention in block 3: a first-of-stage block pools its queries
# and cannot be global) and one-layer memory modules: about 6 M parameters, 0.4 M of them in the image encoder.
MICRO_OVERRIDES = [
    "++model.image_encoder.trunk.embed_dim=16",
    "++model.image_encoder.trunk.num_heads=1",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.neck.backbone_channel_list=[128,64,32,16]",
    "++model.memory_attention.num_layers=1",
    "++model.memory_attention.layer.dim_feedforward=256",
    "++model.memory_encoder.fuser.num_layers=1",
]


def _config(variant: str) -> tuple[str, list[str]]:
    if variant not in CONFIGS:
        raise ValueError(f"unknown sam2 variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    return CONFIGS[variant], list(MICRO_OVERRIDES) if variant == "hiera_micro" else []


def build_sam2_model(variant: str) -> SAM2Base:
    """An untrained SAM 2.1 of `variant` (eval mode, CPU, float32; `build_sam2`'s post-processing defaults)."""
    config, overrides = _config(variant)
    return build_sam2(config, None, device="cpu", hydra_overrides_extra=overrides)


def load_sam2(variant: str, checkpoint: Path) -> SAM2Base:
    """`variant` with `checkpoint` loaded strictly; a mismatch names the variant."""
    config, overrides = _config(variant)
    try:
        return build_sam2(config, str(checkpoint), device="cpu", hydra_overrides_extra=overrides)
    except (RuntimeError, KeyError) as exc:  # KeyError: no "model" key (e.g. a SAM 1 state dict)
        raise ValueError(f"checkpoint {checkpoint} does not fit sam2 variant {variant!r}: {exc!r}") from exc


__all__ = ["CONFIGS", "VARIANTS", "build_sam2_model", "load_sam2"]
