"""Request parsing and CVAT mask RLE."""

from __future__ import annotations

import numpy as np
import pytest
from sam_inference.errors import BadRequestError
from sam_inference.schemas import cvat_mask_shape, mask_to_rle, parse_cvat_request, rle_to_mask


def test_rle_starts_with_the_zero_run_and_round_trips() -> None:
    region = np.array([[1, 1, 0], [0, 1, 1]], dtype=bool)
    rle = mask_to_rle(region)
    assert rle == [0, 2, 2, 2]
    assert np.array_equal(rle_to_mask(rle, 3, 2), region)


def test_rle_round_trips_random_masks() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        h, w = rng.integers(1, 30, size=2)
        region = rng.random((h, w)) > 0.6
        assert np.array_equal(rle_to_mask(mask_to_rle(region), int(w), int(h)), region)


def test_cvat_shape_crops_to_inclusive_bounds() -> None:
    mask = np.zeros((10, 12), dtype=bool)
    mask[2:5, 3:7] = True
    shape = cvat_mask_shape(mask, 0.875)
    assert shape is not None
    assert shape["type"] == "mask"
    assert shape["points"][-4:] == [3, 2, 6, 4]
    assert shape["points"][:-4] == [0, 12]  # the 4x3 crop is all ones
    assert shape["attributes"] == [{"spec_id": 0, "value": "0.8750"}]
    assert cvat_mask_shape(np.zeros((3, 3), dtype=bool), 0.5) is None


def test_cvat_payload_with_box_and_points() -> None:
    req = parse_cvat_request(
        b'{"image": "aGk=", "pos_points": [[1, 2]], "neg_points": [[3.5, 4]], "obj_bbox": [[10, 20], [5, 6]], "roi": 1}'
    )
    prompts = req.prompts()
    assert prompts.points == ((1.0, 2.0), (3.5, 4.0))
    assert prompts.labels == (1, 0)
    assert prompts.box == (5.0, 6.0, 10.0, 20.0)


@pytest.mark.parametrize("box", ["[]", "null", "[1, 2, 3, 4]"])
def test_cvat_box_forms(box: str) -> None:
    req = parse_cvat_request(f'{{"image": "aGk=", "obj_bbox": {box}}}'.encode())
    assert req.box() in (None, (1.0, 2.0, 3.0, 4.0))


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b"{}", "image"),
        (b'{"image": 5}', "image"),
        (b'{"image": "aGk=", "pos_points": "x"}', "pos_points"),
        (b'{"image": "aGk=", "pos_points": [[1]]}', "pos_points"),
        (b'{"image": "aGk=", "obj_bbox": [[1, 2]]}', "obj_bbox"),
        (b'{"image": "aGk=", "neg_points": [["a", "b"]]}', "neg_points"),
        (b'{"image": "aGk=", "pos_points": [[1e300, 5]]}', "pos_points"),
        (b'{"image": "aGk=", "pos_points": [[NaN, 5]]}', "pos_points"),
    ],
)
def test_bad_payloads_raise_400_naming_the_field(body: bytes, needle: str) -> None:
    with pytest.raises(BadRequestError) as info:
        parse_cvat_request(body)
    assert needle in info.value.message
