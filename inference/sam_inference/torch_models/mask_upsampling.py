"""One upsampling pass from a low-res mask's logits to the frame's boolean mask, over the mask's window only.

`Sam.postprocess_masks` interpolates the 256x256 logits to 1024x1024 (bilinear, align_corners=False), crops the
unpadded part and interpolates that to the frame: two passes, the second over every frame pixel. Bilinear
interpolation is linear and separable, so both passes and the crop are one matrix per axis: rows = Ah @ L and
then @ Aw.T, with Ah = M2 @ C @ M1 (H x 256) and Aw the same for the width. The matrices are built once per
frame size from `F.interpolate` itself (applied to the identity), so the weights are upstream's.

Their entries are non-negative and every row sums to 1: a frame pixel is a convex combination of low-res
logits, so it can pass the threshold only where one of its source logits does. Only the window of frame rows
and columns that reach a source logit over the threshold is computed; the rest of the mask is False. For a
click on one object that is a fraction of the frame. Results equal `postprocess_masks` up to float rounding
(a pixel whose logit is within ~1e-6 of the threshold may flip).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch.nn import functional as F

#: Frame sizes whose matrices are kept (a task's frames share one size; ~3 MiB each for 1080p).
CACHED_SIZES = 8


def _interpolation(size_in: int, size_out: int) -> torch.Tensor:
    """F.interpolate's 1-D bilinear (align_corners=False) map as a (size_out x size_in) float64 matrix."""
    identity = torch.eye(size_in, dtype=torch.float64)[None]
    return F.interpolate(identity, size=size_out, mode="linear", align_corners=False)[0].T


@functools.lru_cache(maxsize=2 * CACHED_SIZES)
def axis_map(low: int, out: int, padded: int | None = None, kept: int | None = None) -> torch.Tensor:
    """(out x low) float32: `low` → `padded` (then the first `kept` of them) → `out`; without `padded`, one pass."""
    if padded is None:
        return _interpolation(low, out).float()
    kept = padded if kept is None else kept
    first = _interpolation(low, padded)[:kept]
    return (_interpolation(kept, out) @ first).float().contiguous()


def _support(matrix: torch.Tensor, sources: torch.Tensor) -> tuple[int, int] | None:
    """First and last output index whose row of `matrix` weighs one of the `sources` (bool) positively."""
    reached = torch.nonzero((matrix[:, sources] > 0).any(dim=1)).flatten()
    if reached.numel() == 0:
        return None
    return int(reached[0]), int(reached[-1])


def _taps(matrix: torch.Tensor) -> tuple[int, int]:
    """First and last source index that a block of output rows reads."""
    used = torch.nonzero((matrix > 0).any(dim=0)).flatten()
    return int(used[0]), int(used[-1])


def upsample_mask(logits: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, threshold: float) -> np.ndarray:
    """`rows @ logits @ cols.T > threshold` as an (H x W) bool array, computed over the reachable window only.

    `logits` is one low-res mask (h x w, float32), `rows` (H x h) and `cols` (W x w) are `axis_map`s.
    """
    height, width = rows.shape[0], cols.shape[0]
    mask = np.zeros((height, width), dtype=bool)
    over = logits > threshold
    row_span = _support(rows, over.any(dim=1))
    col_span = _support(cols, over.any(dim=0))
    if row_span is None or col_span is None:
        return mask
    (y0, y1), (x0, x1) = row_span, col_span
    left = rows[y0 : y1 + 1]
    right = cols[x0 : x1 + 1]
    r0, r1 = _taps(left)
    c0, c1 = _taps(right)
    left, right = left[:, r0 : r1 + 1], right[:, c0 : c1 + 1].T
    source = logits[r0 : r1 + 1, c0 : c1 + 1]
    h, r, c, w = left.shape[0], left.shape[1], source.shape[1], right.shape[1]
    cheaper_right_first = r * w * (c + h) <= h * c * (r + w)  # the cheaper association of the two products
    window = left @ (source @ right) if cheaper_right_first else (left @ source) @ right
    mask[y0 : y1 + 1, x0 : x1 + 1] = (window > threshold).numpy()
    return mask
