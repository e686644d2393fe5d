"""The model families and their variants: what ``spec.model.family``/``variant`` may name (the operator checks
and renders them) and what the encoder loads (``SAM_INFERENCE_MODEL_FAMILY``/``_MODEL_VARIANT``)."""

from __future__ import annotations

__all__ = ["FAMILIES", "VARIANTS"]

#: family -> its variants (``vit_tiny`` and ``hiera_micro``: small random architectures for tests and the demo).
VARIANTS: dict[str, tuple[str, ...]] = {
    "sam": ("vit_b", "vit_l", "vit_h", "vit_tiny"),
    "sam2": ("hiera_t", "hiera_s", "hiera_b+", "hiera_l", "hiera_micro"),
}
FAMILIES: tuple[str, ...] = tuple(VARIANTS)
