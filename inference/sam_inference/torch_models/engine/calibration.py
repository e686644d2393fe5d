"""Generated scenes: photo-like images (a lit background, overlapping shaded objects, texture, blur), not noise.
Deterministic per seed. The `openvino` engine calibrates its int8 quantization on them (no user image is needed or
kept); the engine fidelity tests and bench/ use the same scenes (`tests/unit/inference/scenes.py`).

Each scene also names click points inside its objects, where a user would click.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # H x W x 3 uint8 RGB
    clicks: tuple[tuple[float, float], ...]  # (x, y) inside objects


def make_scene(seed: int, width: int = 640, height: int = 480, objects: int = 6) -> Scene:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    top, bottom = rng.uniform(40, 215, size=(2, 3))
    ramp = (yy / max(1, height - 1))[..., None]
    background = top * (1 - ramp) + bottom * ramp
    light = 0.75 + 0.25 * np.cos((xx - rng.uniform(0, width)) / width * np.pi)[..., None]
    canvas = Image.fromarray(np.clip(background * light, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    clicks = []
    for _ in range(objects):
        cx, cy = rng.uniform(0.15, 0.85) * width, rng.uniform(0.15, 0.85) * height
        rx, ry = rng.uniform(0.05, 0.18) * width, rng.uniform(0.05, 0.18) * height
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        box = (cx - rx, cy - ry, cx + rx, cy + ry)
        shape = rng.integers(0, 3)
        if shape == 0:
            draw.ellipse(box, fill=color, outline=(20, 20, 20), width=2)
        elif shape == 1:
            draw.rectangle(box, fill=color, outline=(20, 20, 20), width=2)
        else:
            draw.polygon([(cx, cy - ry), (cx + rx, cy + ry), (cx - rx, cy + ry)], fill=color)
        clicks.append((float(cx), float(cy + (ry / 3 if shape == 2 else 0))))
    blurred = canvas.filter(ImageFilter.GaussianBlur(radius=1.2))
    grain = rng.normal(0, 6, size=(height, width, 3))
    image = np.clip(np.asarray(blurred, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
    return Scene(image=image, clicks=tuple(clicks))


# Sizes of the calibration scenes: landscape, portrait and square frames, as CVAT sends them.
CALIBRATION_SIZES = ((1280, 720), (720, 960), (1024, 1024), (1920, 1080))


def calibration_batches(preprocess: Callable[[np.ndarray], object], count: int) -> list[np.ndarray]:
    """`count` generated scenes through `preprocess` (HxWx3 uint8 -> the encoder's NCHW input tensor), as float32
    arrays: what a post-training quantizer observes to choose its activation ranges."""
    batches = []
    for index in range(count):
        width, height = CALIBRATION_SIZES[index % len(CALIBRATION_SIZES)]
        tensor = preprocess(make_scene(1000 + index, width, height).image)
        batches.append(np.asarray(tensor, dtype=np.float32))
    return batches
