"""A stand-in for CVAT's reference SAM Nuclio handler (cvat-protocol §2.2), for benchmarks only.

One `SamPredictor` per worker thread, one `set_image` per request, no cache, no batching, fp32:
`POST /` with `{"image": base64}` → `{"blob": base64 float32 [1,256,64,64]}`.

    python bench/baseline_server.py --variant vit_tiny --checkpoint tiny.pth --port 18081 [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from aiohttp import web
from PIL import Image
from sam_inference.torch_models.model import load_sam
from segment_anything import SamPredictor


def build_app(variant: str, checkpoint: str, workers: int) -> web.Application:
    local = threading.local()
    pool = ThreadPoolExecutor(max_workers=workers)

    def predictor() -> SamPredictor:
        if not hasattr(local, "predictor"):  # like Nuclio: one model per worker
            local.predictor = SamPredictor(load_sam(variant, checkpoint))  # type: ignore[arg-type]
        return local.predictor  # type: ignore[no-any-return]

    def handle(body: bytes) -> bytes:
        data = json.loads(body)
        image = Image.open(io.BytesIO(base64.b64decode(data["image"]))).convert("RGB")
        sam = predictor()
        sam.set_image(np.array(image))
        features = sam.get_image_embedding()
        return json.dumps({"blob": base64.b64encode(features.cpu().numpy()).decode()}).encode()

    async def invoke(request: web.Request) -> web.Response:
        body = await request.read()
        result = await asyncio.get_running_loop().run_in_executor(pool, handle, body)
        return web.Response(body=result, content_type="application/json")

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/", invoke)
    app.router.add_get("/healthz", healthz)
    # Load the model in every worker before serving, as Nuclio's init_context does.
    for future in [pool.submit(predictor) for _ in range(workers)]:
        future.result()
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", default="vit_tiny")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    web.run_app(
        build_app(args.variant, args.checkpoint, args.workers),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
