"""aiohttp application factory of the encoder: `create_app(settings, predictor=None, predictor_factory=None)`.

Lifecycle: the cleanup context starts a background task that builds the predictor with the injected
`predictor_factory` (the composition root, `__main__`, passes the torch one; this module never imports
torch), loads the checkpoint, warms up, then starts the batcher and flips `/readyz` to 200; `/healthz`
answers from the first moment (and turns 503 if loading failed, so the liveness probe restarts the pod).
On shutdown it stops the batcher and releases the model. The error middleware turns every failure into
`{"error": message}` JSON and records request metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web

from .errors import OverloadedError, ServiceError
from .fetch import sha256_file
from .metrics import Metrics
from .predictor import Predictor, PredictorFactory
from .routes import add_routes
from .service import EmbeddingService
from .settings import InferenceSettings
from .state import STATE, AppState, DecoderAsset

log = logging.getLogger(__name__)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map errors to JSON and count every request by endpoint (route name) and status."""
    started = time.perf_counter()
    route = request.match_info.route
    endpoint = route.name or "other"
    try:
        response = await handler(request)
    except ServiceError as exc:
        response = _error_response(exc.status, exc.message, exc.headers())
    except web.HTTPException as exc:  # aiohttp's own: 404, 405, 413 (client_max_size), ...
        if exc.status < 400:
            raise
        response = _error_response(exc.status, exc.reason if exc.status != 413 else exc.text or exc.reason)
    except Exception:
        log.exception("Failed request %s %s", request.method, request.path)
        response = _error_response(500, "internal error")
    request.app[STATE].metrics.observe_request(endpoint, response.status, time.perf_counter() - started)
    return response


#: Routes that do model work and count against ``max_concurrency`` (health, metrics and the decoder asset don't).
WORK_ROUTES = frozenset({"invoke", "embeddings", "masks"})


@web.middleware
async def admission_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer 429 at once when ``max_concurrency`` requests are already being handled (backpressure)."""
    state = request.app[STATE]
    limit = state.settings.max_concurrency
    if limit is None or request.match_info.route.name not in WORK_ROUTES:
        return await handler(request)
    if state.in_flight >= limit:
        raise OverloadedError(f"{state.in_flight} requests in progress (max_concurrency {limit})", retry_after_s=1)
    state.in_flight += 1
    try:
        return await handler(request)
    finally:
        state.in_flight -= 1


def _load_decoder(path: Path | None) -> DecoderAsset | None:
    if path is None:
        return None
    if not path.is_file():
        log.warning("Decoder %s does not exist; /v1/decoder.onnx answers 404", path)
        return None
    body = path.read_bytes()
    return DecoderAsset(body=body, etag=f'"{hashlib.sha256(body).hexdigest()}"')


def _load_blocking(state: AppState) -> tuple[Predictor, str, DecoderAsset | None]:
    settings = state.settings
    predictor = state.predictor
    if predictor is None:
        if state.predictor_factory is None:
            raise RuntimeError("create_app got neither a predictor nor a predictor_factory")
        predictor = state.predictor_factory(settings)
        state.predictor, state.owns_predictor = predictor, True
    model_id = settings.model_id or sha256_file(settings.checkpoint_path)  # architecture.md: the checkpoint sha256
    predictor.load()
    predictor.warm_up()
    return predictor, model_id, _load_decoder(settings.decoder_path)


async def _load(state: AppState) -> None:
    settings = state.settings
    started = time.perf_counter()
    try:
        predictor, model_id, decoder = await asyncio.get_running_loop().run_in_executor(None, _load_blocking, state)
        service = EmbeddingService(
            predictor,
            model_id=model_id,
            metrics=state.metrics,
            max_pixels=settings.max_pixels,
            max_batch_size=settings.max_batch_size,
            batch_wait_ms=settings.batch_wait_ms,
            max_queue=settings.max_queue,
            cache_max_bytes=settings.cache_max_bytes,
            cache_max_entries=settings.cache_max_entries,
            exclusive_cpu=bool(getattr(predictor, "cpu_bound", False)),
            refine_ttl_s=settings.refine_ttl_s,
            refine_max_entries=settings.refine_max_entries,
            store_bodies=settings.mode == "embedding",
        )
        service.start()
        state.decoder, state.service = decoder, service
        state.metrics.model_load_seconds.set(time.perf_counter() - started)
        state.metrics.ready.set(1)
        log.info(
            "Loaded model %s (%s) in %.1fs",
            settings.model_variant,
            model_id[:24],
            time.perf_counter() - started,
        )
    except Exception as exc:
        state.load_error = f"model load failed: {exc}"
        log.exception("Failed to load model %s from %s", settings.model_variant, settings.checkpoint_path)
    finally:
        state.loaded.set()


async def _model_lifecycle(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    loader = asyncio.create_task(_load(state), name="model-loader")
    yield
    loader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await loader
    state.metrics.ready.set(0)
    if state.service is not None:
        await state.service.close()
        state.service = None
    if state.owns_predictor and state.predictor is not None:
        state.predictor.close()


def create_app(
    settings: InferenceSettings,
    predictor: Predictor | None = None,
    predictor_factory: PredictorFactory | None = None,
) -> web.Application:
    """Build the encoder app around `predictor` (tests) or the one `predictor_factory(settings)` builds
    while the model loads (the service: `torch_models.build_predictor`, injected by `__main__`)."""
    if predictor is None and predictor_factory is None:
        raise TypeError("create_app needs a predictor or a predictor_factory")
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[error_middleware, admission_middleware])
    app[STATE] = AppState(
        settings=settings, metrics=Metrics(), predictor=predictor, predictor_factory=predictor_factory
    )
    add_routes(app)
    app.cleanup_ctx.append(_model_lifecycle)
    return app


__all__ = ["STATE", "AppState", "create_app"]
