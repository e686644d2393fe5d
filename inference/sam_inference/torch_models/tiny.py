"""`sam-inference make-tiny`: a small, randomly initialised SAM of the real architecture.

Tests, the benchmark and the offline demo use it instead of downloading weights. Deterministic for a seed:
the same seed gives byte-identical checkpoint files.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch
from segment_anything.modeling import Sam

from .model import build_sam

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


def build_tiny_sam(seed: int = DEFAULT_SEED) -> Sam:
    """Build the `vit_tiny` SAM with weights drawn from `seed`."""
    return build_random_sam("vit_tiny", seed)


def tiny_checkpoint_bytes(seed: int = DEFAULT_SEED) -> bytes:
    """The serialised state dict of the tiny model for `seed`."""
    buffer = io.BytesIO()
    torch.save(build_tiny_sam(seed).state_dict(), buffer)
    return buffer.getvalue()


def write_tiny_checkpoint(output: Path, seed: int = DEFAULT_SEED) -> str:
    """Write the tiny checkpoint atomically to `output`; returns its sha256 (hex)."""
    data = tiny_checkpoint_bytes(seed)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(output)
    return hashlib.sha256(data).hexdigest()
