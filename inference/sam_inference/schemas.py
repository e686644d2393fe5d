"""Request and response shapes of the HTTP API (pydantic), and CVAT's mask RLE.

`CvatRequest` is the body CVAT sends to an interactor (cvat-protocol §4.3): unknown keys are ignored,
`pos_points`/`neg_points` are [[x, y], ...] in image pixels, `obj_bbox` is [[xtl, ytl], [xbr, ybr]],
[] or null (a flat [x1, y1, x2, y2] is accepted too).
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, field_validator

from .errors import BadRequestError
from .predictor import Prompts

# Image pixels; the bound keeps float32 maths in the prompt encoder finite for any accepted input.
MAX_COORDINATE = 1e7
Coordinate = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_COORDINATE, le=MAX_COORDINATE)]
Point = tuple[Coordinate, Coordinate]


class CvatRequest(BaseModel):
    """Body of `POST /` and `POST /v1/masks`."""

    model_config = ConfigDict(extra="ignore")

    image: StrictStr
    pos_points: list[Point] = Field(default_factory=list)
    neg_points: list[Point] = Field(default_factory=list)
    obj_bbox: list[Point] | list[Coordinate] | None = None

    @field_validator("obj_bbox")
    @classmethod
    def _box_shape(cls, value: list[Any] | None) -> list[Any] | None:
        if value and len(value) != (2 if isinstance(value[0], tuple) else 4):
            raise ValueError("expected [[xtl, ytl], [xbr, ybr]], [x1, y1, x2, y2], [] or null")
        return value

    def box(self) -> tuple[float, float, float, float] | None:
        """The box as (x1, y1, x2, y2), or None."""
        if not self.obj_bbox:
            return None
        if isinstance(self.obj_bbox[0], tuple):
            (x1, y1), (x2, y2) = self.obj_bbox  # type: ignore[misc]
        else:
            x1, y1, x2, y2 = self.obj_bbox  # type: ignore[misc]
        return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))

    def prompts(self) -> Prompts:
        """The click and box prompts in SamPredictor's terms (label 1 positive, 0 negative)."""
        points = [*self.pos_points, *self.neg_points]
        labels = [1] * len(self.pos_points) + [0] * len(self.neg_points)
        return Prompts(points=tuple(points), labels=tuple(labels), box=self.box())


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Parse a JSON object body or raise 400."""
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, or an integer over 4300 digits
        raise BadRequestError(f"body is not valid JSON ({exc})") from exc
    except RecursionError as exc:  # arrays/objects nested thousands deep
        raise BadRequestError("body is not valid JSON (nested too deeply)") from exc
    if not isinstance(value, dict):
        raise BadRequestError(f"body must be a JSON object, got {type(value).__name__}")
    return value


def parse_cvat_request(body: bytes) -> CvatRequest:
    """Validate a CVAT interactor body; the 400 message names each offending field."""
    try:
        return CvatRequest.model_validate(parse_json_object(body))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise BadRequestError(problems) from exc


def mask_bounds(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Inclusive (xtl, ytl, xbr, ybr) of the nonzero pixels of a 2-D mask, or None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def mask_to_rle(region: np.ndarray) -> list[int]:
    """CVAT RLE of a 2-D mask region: row-major run lengths, starting with a (possibly 0) zero run."""
    flat = np.ascontiguousarray(region, dtype=bool).ravel()
    if flat.size == 0:
        return []
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], changes, [flat.size]))).tolist()
    return ([0, *runs]) if flat[0] else runs


def rle_to_mask(rle: list[int], width: int, height: int) -> np.ndarray:
    """Inverse of `mask_to_rle` for a `height` x `width` region (tests and clients)."""
    values = np.zeros(len(rle), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, rle)
    if flat.size != width * height:
        raise ValueError(f"RLE covers {flat.size} pixels, region has {width * height}")
    return flat.reshape(height, width)


def finite_score(score: float) -> float:
    """The score, or 0.0 when it is not finite (strict JSON has no NaN)."""
    return score if math.isfinite(score) else 0.0


def cvat_mask_shape(mask: np.ndarray, score: float) -> dict[str, Any] | None:
    """One CVAT v2.60+ mask shape (cvat-protocol §8B) for a full-image mask; None when it is empty."""
    bounds = mask_bounds(mask)
    if bounds is None:
        return None
    xtl, ytl, xbr, ybr = bounds
    rle = mask_to_rle(mask[ytl : ybr + 1, xtl : xbr + 1])
    return {
        "type": "mask",
        "points": [*rle, xtl, ytl, xbr, ybr],
        "attributes": [{"spec_id": 0, "value": f"{finite_score(score):.4f}"}],
    }
