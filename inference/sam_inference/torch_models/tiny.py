"""`sam-inference make-tiny`: a small, randomly initialised SAM (`vit_tiny`) or SAM 2.1 (`hiera_micro`) of
the real architecture.

Tests, the benchmark and the offline demo use them instead of downloading weights. Deterministic for a seed:
the same seed gives byte-identical checkpoint files. SAM 1's is a plain state dict, SAM 2's is Meta's format
(`{"model": state_dict}`), as the real checkpoints are.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from sam_contract.models import VARIANTS
from segment_anything.modeling import Sam

from .model import build_sam

if TYPE_CHECKING:
    from sam2.modeling.sam2_base import SAM2Base

DEFAULT_SEED = 0


def build_random_sam(variant: str, seed: int = DEFAULT_SEED) -> Sam:
    """Build SAM ``variant`` of the real architecture with weights drawn from ``seed``.

    SAM zero-initialises its positional and relative-position parameters; they get small random values
    here so that a random model exercises every weight, as a trained one would.
    """
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        sam = build_sam(variant)
        with torch.no_grad():
            for name, param in sam.named_parameters():
                if "pos_embed" in name or "rel_pos" in name:
                    param.normal_(0.0, 0.02)
    finally:
        torch.random.set_rng_state(generator_state)
    return sam.eval()


def build_random_sam2(variant: str, seed: int = DEFAULT_SEED) -> SAM2Base:
    """Build SAM 2.1 ``variant`` (its package's config) with weights drawn from ``seed``; parameters the
    package initialises to zero (positional embeddings, biases, ...) get small random values too."""
    from .sam2_model import build_sam2_model  # sam2 (and Hydra) only where a SAM 2 is asked for

    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = build_sam2_model(variant)
        with torch.no_grad():
            for param in model.parameters():
                if not param.any():
                    param.normal_(0.0, 0.02)
    finally:
        torch.random.set_rng_state(generator_state)
    return model.eval()


def build_tiny_sam(seed: int = DEFAULT_SEED) -> Sam:
    """Build the `vit_tiny` SAM with weights drawn from `seed`."""
    return build_random_sam("vit_tiny", seed)


TINY_VARIANTS = {"sam": "vit_tiny", "sam2": "hiera_micro"}


def random_checkpoint_bytes(variant: str, seed: int = DEFAULT_SEED) -> bytes:
    """The serialised checkpoint of a random ``variant`` of either family (``vit_b``, ``hiera_l``, ...) for `seed`,
    in its family's format (SAM 1: a plain state dict; SAM 2: Meta's ``{"model": state_dict}``)."""
    buffer = io.BytesIO()
    if variant in VARIANTS["sam2"]:
        torch.save({"model": build_random_sam2(variant, seed).state_dict()}, buffer)
    elif variant in VARIANTS["sam"]:
        torch.save(build_random_sam(variant, seed).state_dict(), buffer)
    else:
        known = ", ".join(sorted({*VARIANTS["sam"], *VARIANTS["sam2"]}))
        raise ValueError(f"unknown model variant {variant!r}; expected one of {known}")
    return buffer.getvalue()


def tiny_checkpoint_bytes(seed: int = DEFAULT_SEED, family: str = "sam") -> bytes:
    """The serialised checkpoint of the family's tiny model (`vit_tiny`, `hiera_micro`) for `seed`."""
    if family not in TINY_VARIANTS:
        raise ValueError(f"unknown model family {family!r}; expected sam or sam2")
    return random_checkpoint_bytes(TINY_VARIANTS[family], seed)


def write_tiny_checkpoint(
    output: Path, seed: int = DEFAULT_SEED, family: str = "sam", variant: str | None = None
) -> str:
    """Write the family's tiny checkpoint (or a random ``variant``'s) atomically to `output`; returns its sha256."""
    data = random_checkpoint_bytes(variant, seed) if variant else tiny_checkpoint_bytes(seed, family)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(output)
    return hashlib.sha256(data).hexdigest()
