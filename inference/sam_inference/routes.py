"""HTTP handlers of the encoder.

- `POST /`: CVAT's Nuclio function contract (cvat-protocol §2.3, §8). `embedding` mode, SAM 1: `{"blob":
  base64 of little-endian float32 [1,256,64,64]}` (4,194,304 bytes); SAM 2: CVAT PR #8610's three tensors
  `{"high_res_feats_0": [1,32,256,256], "high_res_feats_1": [1,64,128,128], "image_embed": [1,256,64,64]}`,
  each base64 of little-endian float32 (sam2-and-prefetch.md §A3). `masks` mode: `{"shapes": [CVAT mask
  shape]}` decoded server-side with the family's predictor semantics (a padding point when there is no box,
  unlike SAM 1's browser plugin; cvat-protocol §6.5), refined by the previous click's mask (`refine.py`); no
  prompts or an empty mask give `{"shapes": []}`.
- `POST /v1/embeddings`: raw image bytes in; raw little-endian embedding out (`?dtype=float32|float16`),
  with `X-Embedding-Shape`, `X-Embedding-Dtype`, `X-Image-Height`, `X-Image-Width`, `X-Cache` headers. For
  SAM 2 the body is the three tensors back to back in #8610's order and `X-Embedding-Shape` lists their
  shapes separated by `;`.
- `POST /v1/masks`: CVAT-style JSON in; `{"width", "height", "score", "bounds", "rle"}` out (RLE over the
  bounds as in CVAT; `bounds`/`rle` null when the mask is empty).
- `GET /v1/decoder.onnx` (strong ETag, If-None-Match → 304), `/healthz`, `/readyz`, `/metrics`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from .blobs import sam2_arrays
from .cache import Lookup
from .errors import BadRequestError, DeadlineExceededError, NotFoundError, NotReadyError
from .schemas import CvatRequest, cvat_mask_shape, finite_score, mask_bounds, mask_to_rle, parse_cvat_request
from .service import Base64Image
from .state import STATE, AppState

EMBEDDING_DTYPES = {"float32": "<f4", "float16": "<f2"}


def _state(request: web.Request) -> AppState:
    return request.app[STATE]


async def _with_deadline(state: AppState, coro: Any) -> Any:
    try:
        async with asyncio.timeout(state.settings.request_timeout_s):
            return await coro
    except TimeoutError as exc:
        raise DeadlineExceededError(f"request did not finish within {state.settings.request_timeout_s:g}s") from exc


def _parse_cvat(body: bytes) -> tuple[CvatRequest, Base64Image]:
    request = parse_cvat_request(body)
    return request, Base64Image.of(request.image)  # decoded by the service only when it is not cached


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


async def _read_cvat(state: AppState, request: web.Request) -> tuple[CvatRequest, Base64Image]:
    service = state.require_service()
    body = await request.read()
    return await service.run_blocking(_parse_cvat, body)


async def cvat_invoke(request: web.Request) -> web.Response:
    """POST / — CVAT's SAM function (embedding mode) or generic interactor (masks mode)."""
    state = _state(request)

    async def handle() -> web.Response:
        payload, image = await _read_cvat(state, request)
        service = state.require_service()
        if state.settings.mode == "embedding":
            body, lookup = await service.blob(image)  # on a hit, the bytes stored in the cache entry
        else:
            _, result, lookup = await service.masks(image, payload.prompts())
            shape = cvat_mask_shape(result.mask, result.score) if result is not None else None
            with service.metrics.stage("serialize"):
                body = _json_bytes({"shapes": [shape] if shape else []})
        return web.Response(body=body, content_type="application/json", headers={"X-Cache": lookup.value})

    return await _with_deadline(state, handle())  # type: ignore[no-any-return]


async def embeddings(request: web.Request) -> web.Response:
    """POST /v1/embeddings — raw image bytes in, raw embedding out."""
    state = _state(request)
    dtype = request.query.get("dtype", "float32")
    if dtype not in EMBEDDING_DTYPES:
        raise BadRequestError(f"dtype must be one of {', '.join(EMBEDDING_DTYPES)}, got {dtype!r}")

    async def handle() -> web.Response:
        service = state.require_service()
        image = await request.read()
        if not image:
            raise BadRequestError("body is empty; send the image file bytes")
        embedding, lookup = await service.embedding(image)
        arrays = sam2_arrays(embedding) if embedding.high_res else (embedding.array,)
        with service.metrics.stage("serialize"):
            body = b"".join(np.ascontiguousarray(a, dtype=EMBEDDING_DTYPES[dtype]).tobytes() for a in arrays)
        headers = {
            "X-Embedding-Shape": ";".join(",".join(str(d) for d in a.shape) for a in arrays),
            "X-Embedding-Dtype": dtype,
            "X-Image-Height": str(embedding.height),
            "X-Image-Width": str(embedding.width),
            "X-Cache": lookup.value,
        }
        return web.Response(body=body, content_type="application/octet-stream", headers=headers)

    return await _with_deadline(state, handle())  # type: ignore[no-any-return]


async def masks(request: web.Request) -> web.Response:
    """POST /v1/masks — image + prompts in, one mask (RLE over its bounds) out."""
    state = _state(request)

    async def handle() -> web.Response:
        payload, image = await _read_cvat(state, request)
        prompts = payload.prompts()
        if prompts.empty:
            raise BadRequestError("give at least one of pos_points, neg_points, obj_bbox")
        service = state.require_service()
        embedding, result, lookup = await service.masks(image, prompts)
        assert result is not None
        bounds = mask_bounds(result.mask)
        rle = None
        if bounds is not None:
            xtl, ytl, xbr, ybr = bounds
            rle = mask_to_rle(result.mask[ytl : ybr + 1, xtl : xbr + 1])
        body = {
            "width": embedding.width,
            "height": embedding.height,
            "score": finite_score(result.score),
            "bounds": list(bounds) if bounds else None,
            "rle": rle,
        }
        return web.json_response(body, headers={"X-Cache": lookup.value})

    return await _with_deadline(state, handle())  # type: ignore[no-any-return]


async def decoder_onnx(request: web.Request) -> web.Response:
    """GET /v1/decoder.onnx — the CVAT-format decoder matching this model."""
    state = _state(request)
    if not state.ready:
        raise NotReadyError(state.load_error or "model is loading")
    asset = state.decoder
    if asset is None:
        raise NotFoundError("no decoder configured (SAM_INFERENCE_DECODER_PATH)")
    headers = {"ETag": asset.etag, "Cache-Control": "public, max-age=3600"}
    match = request.headers.get("If-None-Match", "")
    if asset.etag in {tag.strip() for tag in match.split(",")} or match.strip() == "*":
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, content_type="application/octet-stream", headers=headers)


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz — liveness: 200 while the process works, 503 after a failed model load."""
    state = _state(request)
    if state.load_error:
        return web.json_response({"status": "failed", "error": state.load_error}, status=503)
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """GET /readyz — readiness: 200 only once the model is loaded and warmed up."""
    state = _state(request)
    if not state.ready:
        return web.json_response({"status": "not ready", "error": state.load_error or "model is loading"}, status=503)
    return web.json_response({"status": "ready", "model": state.settings.model_variant, "mode": state.settings.mode})


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics — Prometheus text format."""
    state = _state(request)
    gpu = state.predictor.memory_stats if state.ready and state.predictor is not None else None
    response = web.Response(body=state.metrics.render(gpu))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def add_routes(app: web.Application) -> None:
    """Register every route; names are the `endpoint` label of the request metrics."""
    app.router.add_post("/", cvat_invoke, name="invoke")
    app.router.add_post("/v1/embeddings", embeddings, name="embeddings")
    app.router.add_post("/v1/masks", masks, name="masks")
    app.router.add_get("/v1/decoder.onnx", decoder_onnx, name="decoder")
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/readyz", readyz, name="readyz")
    app.router.add_get("/metrics", metrics, name="metrics")


__all__ = ["Lookup", "add_routes"]
