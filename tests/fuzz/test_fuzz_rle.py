"""Property tests of CVAT's mask RLE (cvat-protocol §8B): `mask_to_rle` / `rle_to_mask` round-trip exactly,
the runs start with a (possibly empty) zero run and alternate, and `cvat_mask_shape` crops to the inclusive
bounds of the mask."""

from __future__ import annotations

import numpy as np
from fuzz._cases import count, fuzz_settings
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sam_inference.schemas import cvat_mask_shape, mask_bounds, mask_to_rle, rle_to_mask


@st.composite
def masks(draw: st.DrawFn) -> np.ndarray:
    height = draw(st.integers(1, 40))
    width = draw(st.integers(1, 40))
    kind = draw(st.sampled_from(["random", "empty", "full", "one-pixel", "blocks"]))
    mask = np.zeros((height, width), dtype=bool)
    if kind == "random":
        mask = draw(arrays(np.bool_, (height, width)))
    elif kind == "full":
        mask[:] = True
    elif kind == "one-pixel":
        mask[draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))] = True
    elif kind == "blocks":
        for _ in range(draw(st.integers(1, 4))):
            y0, x0 = draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))
            mask[y0 : y0 + draw(st.integers(1, height)), x0 : x0 + draw(st.integers(1, width))] = True
    return mask


def reference_rle(region: np.ndarray) -> list[int]:
    """CVAT's own `mask_to_rle` (serverless/.../iog/nuclio/model_handler.py), transcribed."""
    counts: list[int] = []
    flat = region.flatten()
    current, run = 0, 0
    for value in flat:
        if int(bool(value)) == current:
            run += 1
        else:
            counts.append(run)
            current, run = int(bool(value)), 1
    counts.append(run)
    return counts


@fuzz_settings(600)
@given(masks())
def test_rle_round_trips_and_matches_cvats_encoder(mask: np.ndarray) -> None:
    height, width = mask.shape
    rle = mask_to_rle(mask)
    assert all(isinstance(n, int) for n in rle)
    assert sum(rle) == mask.size
    assert rle[0] >= 0 and all(n > 0 for n in rle[1:]), "only the leading zero run may be empty"
    assert (rle[0] == 0) == bool(mask.flat[0]), "the first run counts zeros"
    assert rle == reference_rle(mask)
    assert np.array_equal(rle_to_mask(rle, width, height), mask)
    # Odd-indexed runs are ones: their total is the mask area.
    assert sum(rle[1::2]) == int(mask.sum())
    count("rle: round trip", "empty" if not mask.any() else "full" if mask.all() else "mixed")


@fuzz_settings(400)
@given(masks(), st.floats(0, 1, allow_nan=False))
def test_cvat_mask_shape_covers_exactly_the_mask(mask: np.ndarray, score: float) -> None:
    shape = cvat_mask_shape(mask, score)
    if not mask.any():
        assert shape is None and mask_bounds(mask) is None
        count("rle: cvat shape", "empty")
        return
    assert shape is not None and shape["type"] == "mask"
    *rle, xtl, ytl, xbr, ybr = shape["points"]
    assert 0 <= xtl <= xbr < mask.shape[1] and 0 <= ytl <= ybr < mask.shape[0]
    region = rle_to_mask(rle, xbr - xtl + 1, ybr - ytl + 1)
    canvas = np.zeros_like(mask)
    canvas[ytl : ybr + 1, xtl : xbr + 1] = region
    assert np.array_equal(canvas, mask)
    # The bounds are tight: every border row/column of the region holds a mask pixel.
    assert region[0].any() and region[-1].any() and region[:, 0].any() and region[:, -1].any()
    assert shape["attributes"] == [{"spec_id": 0, "value": f"{score:.4f}"}]
    count("rle: cvat shape", "mask")


def test_rle_of_an_empty_region_is_empty() -> None:
    assert mask_to_rle(np.zeros((0, 5), dtype=bool)) == []
    count("rle: round trip", "zero-size")
