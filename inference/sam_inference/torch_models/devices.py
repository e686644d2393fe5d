"""Device facts both predictors report."""

from __future__ import annotations

import torch


def cuda_memory_stats(device: torch.device) -> dict[tuple[str, str], int]:
    """{(cuda:N, allocated|reserved): bytes} on a CUDA device, else {}."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return {}
    index = torch.cuda.current_device()
    name = f"cuda:{index}"
    return {
        (name, "allocated"): int(torch.cuda.memory_allocated(index)),
        (name, "reserved"): int(torch.cuda.memory_reserved(index)),
    }


def check_device(device_name: str) -> None:
    """Fail loudly where `cuda` is asked for and none exists (never fall back to the CPU silently)."""
    if device_name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("SAM_INFERENCE_DEVICE=cuda but no CUDA device is available")
