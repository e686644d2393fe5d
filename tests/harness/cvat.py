"""HTTP calls shaped exactly like CVAT's lambda manager (cvat-protocol.md §3.2, §4.1, §4.2, §12)."""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request
from typing import Any

import numpy as np
from PIL import Image

CVAT_HEADERS = {
    "User-Agent": "CVAT/2.73.0 python-requests/2.32.3",
    "x-nuclio-project-name": "cvat",
    "x-nuclio-function-namespace": "nuclio",
    "x-nuclio-invoke-via": "domain-name",
    "X-Nuclio-Invoke-Timeout": "120s",
}


def _call(
    method: str, url: str, headers: dict[str, str], body: bytes | None = None, timeout: float = 120
) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            raw, status, hdrs = resp.read(), resp.status, dict(resp.headers)
    except urllib.error.HTTPError as err:
        raw, status, hdrs = err.read(), err.code, dict(err.headers)
    try:
        return status, hdrs, json.loads(raw)
    except ValueError:
        return status, hdrs, raw


class CvatClient:
    """What CVAT's server does against CVAT_NUCLIO_HOST:CVAT_NUCLIO_PORT."""

    def __init__(self, gateway_port: int) -> None:
        self.base = f"http://127.0.0.1:{gateway_port}"

    def list_functions(self) -> dict[str, Any]:
        status, _, body = _call("GET", f"{self.base}/api/functions", CVAT_HEADERS)
        assert status == 200, body
        assert isinstance(body, dict)
        return body

    def get_function(self, name: str) -> tuple[int, Any]:
        status, _, body = _call("GET", f"{self.base}/api/functions/{name}", CVAT_HEADERS)
        return status, body

    def invoke_dashboard(self, name: str, payload: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        headers = {
            **CVAT_HEADERS,
            "x-nuclio-function-name": name,
            "x-nuclio-path": "/",
            "Content-Type": "application/json",
        }
        return _call("POST", f"{self.base}/api/function_invocations", headers, json.dumps(payload).encode())

    @staticmethod
    def invoke_direct(http_port: int, payload: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        headers = {"User-Agent": CVAT_HEADERS["User-Agent"], "Content-Type": "application/json"}
        return _call("POST", f"http://127.0.0.1:{http_port}/", headers, json.dumps(payload).encode())


def interactor_payload(
    image_png: bytes,
    pos: list[list[float]],
    neg: list[list[float]] | None = None,
    bbox: list[list[float]] | None = None,
) -> dict[str, Any]:
    return {
        "image": base64.b64encode(image_png).decode(),
        "pos_points": pos,
        "neg_points": neg or [],
        "obj_bbox": bbox or [],
    }


def synthetic_image(width: int = 320, height: int = 240, seed: int = 0) -> tuple[bytes, np.ndarray]:
    """A PNG with a few filled shapes; returns (png bytes, RGB array)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.zeros((height, width, 3), dtype=np.uint8)
    img[:] = rng.integers(20, 60, size=3)
    for _ in range(3):
        cx, cy, r = rng.integers(40, width - 40), rng.integers(40, height - 40), rng.integers(15, 40)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.integers(120, 255, size=3)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue(), img


def decode_cvat_rle(points: list[int]) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """CVAT mask RLE (zero run first, row-major over the inclusive box) + [xtl, ytl, xbr, ybr] → (mask, box)."""
    *runs, xtl, ytl, xbr, ybr = points
    width, height = xbr - xtl + 1, ybr - ytl + 1
    flat = np.zeros(width * height, dtype=np.uint8)
    pos, value = 0, 0
    for run in runs:
        flat[pos : pos + run] = value
        pos += run
        value ^= 1
    assert pos == width * height, f"RLE covers {pos} pixels, box has {width * height}"
    return flat.reshape(height, width), (xtl, ytl, xbr, ybr)
