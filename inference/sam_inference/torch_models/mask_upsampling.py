"""One upsampling pass from a low-res mask's logits to the frame's boolean mask, over the mask's window only.

`Sam.postprocess_masks` interpolates the 256x256 logits to 1024x1024 (bilinear, align_corners=False), crops the
unpadded part and interpolates that to the frame: two passes, the second over every frame pixel. Bilinear
interpolation is linear and separable, so both passes and the crop are one matrix per axis: rows = Ah @ L and
then @ Aw.T, with Ah = M2 @ C @ M1 (H x 256) and Aw the same for the width. The matrices are built once per
frame size from `F.interpolate` itself (applied to the identity), so the weights are upstream's.

Their entries are non-negative and every row sums to 1: a frame pixel is a convex combination of low-res
logits, so it can pass the threshold only where one of its source logits does. Only the window of frame rows
and columns that reach a source logit over the threshold is computed; the rest of the mask is False. For a
click on one object that is a fraction of the frame. The columns come first, for the source rows the window
reads, by upstream's own two 1-D interpolations along the width (one vectorised call each; the banded product
took twice as long); then the rows, by the row matrix, which is banded (a frame pixel weighs two or three
adjacent logits): band by band over the run of logits each band reads, each band compared with the threshold
while in cache. Results equal `postprocess_masks` up to float rounding (a pixel whose logit is within ~1e-5 of
the threshold may flip).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

#: Frame sizes whose maps are kept (a task's frames share one size; ~3 MiB each for 1080p).
CACHED_SIZES = 8
#: Output pixels per band: each band of a map reads a narrow run of source logits (a dozen for 1080p).
BAND = 64


def _interpolation(size_in: int, size_out: int) -> torch.Tensor:
    """F.interpolate's 1-D bilinear (align_corners=False) map as a (size_out x size_in) float64 matrix."""
    identity = torch.eye(size_in, dtype=torch.float64)[None]
    return F.interpolate(identity, size=size_out, mode="linear", align_corners=False)[0].T


@dataclass(frozen=True)
class _Bands:
    """Where a map's matrix is non-zero: per output index the first and last source it weighs, and per band of
    `BAND` outputs the run of sources the band reads (`(out_start, out_stop, src_start, src_stop)`)."""

    first: np.ndarray
    last: np.ndarray
    bands: tuple[tuple[int, int, int, int], ...]

    @classmethod
    def of(cls, matrix: torch.Tensor) -> _Bands:
        positive = (matrix > 0).numpy()
        first, last = positive.argmax(axis=1), positive.shape[1] - 1 - positive[:, ::-1].argmax(axis=1)
        bands = []
        for b0 in range(0, matrix.shape[0], BAND):
            b1 = min(b0 + BAND, matrix.shape[0])
            bands.append((b0, b1, int(first[b0:b1].min()), int(last[b0:b1].max()) + 1))
        return cls(first=first, last=last, bands=tuple(bands))

    def reach(self, source_start: int, source_last: int) -> tuple[int, int] | None:
        """First and last output that weighs a source in [source_start, source_last] (None: no output does)."""
        reached = np.flatnonzero((self.last >= source_start) & (self.first <= source_last))
        return None if reached.size == 0 else (int(reached[0]), int(reached[-1]))

    def reads(self, start: int, stop: int) -> tuple[int, int]:
        """The run of sources that outputs [start, stop) read, band by band."""
        runs = [(s0, s1) for b0, b1, s0, s1 in self.bands if b0 < stop and start < b1]
        return min(run[0] for run in runs), max(run[1] for run in runs)


@dataclass(frozen=True, eq=False)
class AxisMap:
    """One axis of `postprocess_masks`: `low` logits → `padded` (the first `kept` of them) → `out` pixels (without
    `padded`, one pass), as the (out x low) float32 `matrix`, its `bands`, and upstream's passes (`interpolate`)."""

    low: int
    out: int
    padded: int | None
    kept: int | None
    matrix: torch.Tensor
    bands: _Bands

    def interpolate(self, values: torch.Tensor) -> torch.Tensor:
        """`values` (rows x low) → (rows x out) along the last axis: upstream's 1-D passes and crop."""
        values = values[None]
        if self.padded is not None:
            values = F.interpolate(values, size=self.padded, mode="linear", align_corners=False)[..., : self.kept]
        return F.interpolate(values, size=self.out, mode="linear", align_corners=False)[0]


@functools.lru_cache(maxsize=2 * CACHED_SIZES)
def axis_map(low: int, out: int, padded: int | None = None, kept: int | None = None) -> AxisMap:
    """The `AxisMap` of `low` → `padded` (then the first `kept` of them) → `out`; without `padded`, one pass."""
    if padded is None:
        matrix = _interpolation(low, out).float()
    else:
        kept = padded if kept is None else kept
        first = _interpolation(low, padded)[:kept]
        matrix = (_interpolation(kept, out) @ first).float().contiguous()
    return AxisMap(low, out, padded, kept, matrix, _Bands.of(matrix))


def upsample_mask(logits: torch.Tensor, rows: AxisMap, cols: AxisMap, threshold: float) -> np.ndarray:
    """`rows @ logits @ cols.T > threshold` as an (H x W) bool array, computed over the reachable window only.

    `logits` is one low-res mask (h x w, float32); `rows` and `cols` map its two axes to the frame's. The window
    spans the outputs that weigh a logit between the first and last row (column) holding one over the threshold.
    """
    height, width = rows.out, cols.out
    mask = np.zeros((height, width), dtype=bool)
    # Found with numpy: torch's reductions here woke its thread pool (~0.2 ms more after the decoder's graph).
    over = logits.numpy() > threshold
    over_rows, over_cols = np.flatnonzero(over.any(axis=1)), np.flatnonzero(over.any(axis=0))
    if over_rows.size == 0:
        return mask
    row_span = rows.bands.reach(int(over_rows[0]), int(over_rows[-1]))
    col_span = cols.bands.reach(int(over_cols[0]), int(over_cols[-1]))
    if row_span is None or col_span is None:
        return mask
    (y0, y1), (x0, x1) = row_span, col_span
    r0, r1 = rows.bands.reads(y0, y1 + 1)
    columns = cols.interpolate(logits[r0:r1])[:, x0 : x1 + 1].contiguous()  # (r x w), the window's columns
    # Then the rows, band by band, each band compared with the threshold straight into the mask while it is in
    # cache (a 1080p window is ~8 MB of float32): numpy's comparison into the strided window of the mask (torch.gt
    # with such an `out` took ~1 ns a pixel here).
    band = torch.empty(BAND, x1 + 1 - x0, dtype=columns.dtype)
    values = band.numpy()
    for b0, b1, s0, s1 in rows.bands.bands:
        lo, hi = max(b0, y0), min(b1, y1 + 1)
        if lo < hi:
            torch.matmul(rows.matrix[lo:hi, s0:s1], columns[s0 - r0 : s1 - r0], out=band[: hi - lo])
            np.greater(values[: hi - lo], threshold, out=mask[lo:hi, x0 : x1 + 1])  # written in place
    return mask
