"""The CVAT half of hack/demo.py: CVAT's own requests to the gateway, the browser plugin's decoding, the PNGs.

Requests come from tests/harness/cvat.py (headers and bodies exactly as CVAT's lambda manager sends them);
decoding follows CVAT's SAM browser plugin (docs/cvat-integration.md): the 1x256x64x64 float32 embedding plus
the clicks, scaled by 1024/max(W, H), into the exported decoder, which returns the mask cropped to its box.
"""

from __future__ import annotations

import base64
import io
import os
import time
from typing import Any

import numpy as np
from demo_lib import DemoError, DemoPaths, block, info
from PIL import Image, ImageDraw


def image(paths: DemoPaths) -> tuple[bytes, np.ndarray]:
    """$DEMO_IMAGE (any photo) or a generated 320x240 scene; saved as image.png and sent as PNG bytes."""
    from harness.cvat import synthetic_image

    source = os.environ.get("DEMO_IMAGE")
    if source:
        rgb = np.asarray(Image.open(source).convert("RGB"))
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG")
        png = buf.getvalue()
    else:
        png, rgb = synthetic_image(seed=1)
    paths.out("image.png").write_bytes(png)
    info(f"image: {source or 'generated scene'} ({rgb.shape[1]}x{rgb.shape[0]}, {len(png) / 1024:.0f} KiB PNG)")
    return png, rgb


def invoke(
    gateway_port: int, function: str, png: bytes, rgb: np.ndarray, pos: list[list[float]], neg: list[list[float]]
) -> bytes:
    from harness.cvat import CvatClient, interactor_payload

    cvat = CvatClient(gateway_port)
    functions = cvat.list_functions()
    info(f"GET /api/functions → {len(functions)} function(s)")
    for name, fn in functions.items():
        ann = fn["metadata"]["annotations"]
        info(
            f"  {name}: name={ann['name']!r} type={ann['type']} version={ann['version']} "
            f"httpPort={fn['status'].get('httpPort')}"
        )
    payload = interactor_payload(png, pos=pos, neg=neg)
    blob = b""
    for label in ("first click (encodes the image)", "second click, same frame (embedding cache)"):
        started = time.monotonic()
        status, headers, body = cvat.invoke_dashboard(function, payload)
        if status != 200:
            raise DemoError(f"POST /api/function_invocations answered {status}: {str(body)[:300]}")
        blob = base64.b64decode(body["blob"])
        info(
            f"POST /api/function_invocations ({label}): 200 in {(time.monotonic() - started) * 1000:.0f} ms, "
            f"replica {headers.get('X-Sam-Gateway-Replica', '?')}"
        )
    http_port = functions[function]["status"]["httpPort"]
    status, _, body = CvatClient.invoke_direct(http_port, payload)
    info(
        f"POST 127.0.0.1:{http_port}/ (CVAT's direct mode, same payload): {status}, "
        f"same blob: {status == 200 and base64.b64decode(body['blob']) == blob}"
    )
    embedding = np.frombuffer(blob, dtype="<f4")
    info(
        f"embedding: {len(blob):,} bytes = float32 {tuple(embedding.reshape(1, 256, 64, 64).shape)} "
        f"(the 'blob' CVAT hands to its browser plugin; image {rgb.shape[1]}x{rgb.shape[0]})"
    )
    return blob


def decode_like_the_browser(
    encoder: str, rgb: np.ndarray, blob: bytes, pos: list[list[float]], neg: list[list[float]]
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The full-size boolean mask and its [xtl, ytl, xbr, ybr] box."""
    import onnxruntime as ort
    from harness.processes import http_get

    code, decoder = http_get(f"http://{encoder}/v1/decoder.onnx", timeout=30)
    if code != 200:
        raise DemoError(f"GET /v1/decoder.onnx answered {code}")
    info(f"decoder.onnx: {len(decoder) / 1e6:.1f} MB from the encoder (exported by its init container)")
    h, w = rgb.shape[:2]
    scale = 1024 / max(w, h)
    coords = np.array([pos + neg], dtype=np.float32) * scale
    labels = np.array([[1] * len(pos) + [0] * len(neg)], dtype=np.float32)
    session = ort.InferenceSession(decoder, providers=["CPUExecutionProvider"])
    masks, _, _, xtl, ytl, xbr, ybr = session.run(
        None,
        {
            "image_embeddings": np.frombuffer(blob, dtype="<f4").reshape(1, 256, 64, 64),
            "point_coords": coords,
            "point_labels": labels,
            "orig_im_size": np.array([h, w], dtype=np.float32),
            "mask_input": np.zeros((1, 1, 256, 256), dtype=np.float32),
            "has_mask_input": np.zeros(1, np.float32),
        },
    )
    box = (int(xtl), int(ytl), int(xbr), int(ybr))
    full = np.zeros((h, w), dtype=bool)
    full[box[1] : box[3] + 1, box[0] : box[2] + 1] = masks[0, 0].astype(bool)
    info(f"mask: {int(full.sum()):,} pixels in box xtl={box[0]} ytl={box[1]} xbr={box[2]} ybr={box[3]}")
    return full, box


def overlay(
    rgb: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int], pos: list[list[float]], neg: list[list[float]]
) -> Image.Image:
    tinted = rgb.astype(np.float32)
    tinted[mask] = 0.45 * tinted[mask] + 0.55 * np.array([30, 144, 255], dtype=np.float32)
    picture = Image.fromarray(tinted.astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    draw.rectangle(box, outline=(255, 215, 0), width=2)
    for points, colour in ((pos, (0, 200, 0)), (neg, (220, 0, 0))):
        for x, y in points:
            draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=colour, outline=(255, 255, 255))
    return picture


def save_outputs(
    paths: DemoPaths,
    function: str,
    rgb: np.ndarray,
    blob: bytes,
    mask: np.ndarray,
    box: tuple[int, int, int, int],
    pos: list[list[float]],
    neg: list[list[float]],
) -> dict[str, Any]:
    Image.fromarray(mask.astype(np.uint8) * 255).save(paths.out("mask.png"))
    overlay(rgb, mask, box, pos, neg).save(paths.out("mask-overlay.png"))
    block(
        f"saved {paths.out('mask-overlay.png')} (mask in blue, box in yellow, clicks green/red)\n"
        f"saved {paths.out('mask.png')} (the mask alone)"
    )
    info("the demo's model is randomly initialised, so the mask's shape means nothing; the plumbing is the point")
    return {
        "function": function,
        "embedding_shape": [1, 256, 64, 64],
        "embedding_bytes": len(blob),
        "image": str(paths.out("image.png")),
        "mask": str(paths.out("mask.png")),
        "overlay": str(paths.out("mask-overlay.png")),
        "box": list(box),
        "mask_pixels": int(mask.sum()),
        "pos_points": pos,
        "neg_points": neg,
        "checkpoint": str(paths.out("checkpoints") / "sam_vit_tiny.pth"),
    }
