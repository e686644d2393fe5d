"""What the SAM and SAM 2.1 predictors share: readiness and device, memory stats, release, and the decode tail
(the best-scored mask of a decoder answer, upsampled alone, thresholded, with its low-res logits)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import torch

from ..predictor import MaskResult
from .devices import cuda_memory_stats


class TorchPredictorBase:
    """Readiness, device and release of a predictor; `_release` drops what a subclass holds."""

    def __init__(self, device: str) -> None:
        self.device_name = device
        self._dense_pe: torch.Tensor | None = None
        self._lock = threading.Lock()
        self._ready = False

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def cpu_bound(self) -> bool:
        return self.device.type == "cpu"

    @property
    def device(self) -> torch.device:
        return torch.device(self.device_name)

    def memory_stats(self) -> dict[tuple[str, str], int]:
        return cuda_memory_stats(self.device)

    def _release(self) -> None:
        """Drop the model and whatever was prepared from it (called under the lock)."""

    def close(self) -> None:
        with self._lock:
            self._ready = False
            self._dense_pe = None
            self._release()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()


def best_mask(
    low_res: torch.Tensor,
    scores: torch.Tensor,
    upsample: Callable[[torch.Tensor], torch.Tensor],
    threshold: float,
    clamp: float | None = None,
) -> MaskResult:
    """The best-scored of the decoder's masks ([1, N, 256, 256] logits, [1, N] scores): `upsample`d to the frame
    alone and thresholded; its low-res logits (clamped to ±`clamp` where the family's predictor does) come along
    for the next click."""
    best = int(torch.argmax(scores[0]))
    chosen = low_res[:, best : best + 1]
    mask = (upsample(chosen)[0, 0] > threshold).cpu().numpy()
    low = chosen[0] if clamp is None else torch.clamp(chosen[0], -clamp, clamp)
    return MaskResult(
        mask=np.asarray(mask, dtype=bool),
        score=float(scores[0, best]),
        low_res=np.ascontiguousarray(low.float().cpu().numpy()),
    )
