"""Per-app state of the encoder, shared by the app factory (`app.py`) and the handlers (`routes.py`).

Its own module so that neither of those imports the other.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from .errors import NotReadyError
from .metrics import Metrics
from .predictor import Predictor, PredictorFactory
from .service import EmbeddingService
from .settings import InferenceSettings


@dataclass(frozen=True)
class DecoderAsset:
    """The exported decoder served at /v1/decoder.onnx."""

    body: bytes
    etag: str


@dataclass
class AppState:
    """Mutable per-app state shared by the handlers."""

    settings: InferenceSettings
    metrics: Metrics
    predictor: Predictor | None = None
    predictor_factory: PredictorFactory | None = None
    owns_predictor: bool = False
    service: EmbeddingService | None = None
    decoder: DecoderAsset | None = None
    load_error: str | None = None
    loaded: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: int = 0

    @property
    def ready(self) -> bool:
        return self.service is not None and self.load_error is None

    def require_service(self) -> EmbeddingService:
        if self.service is None:
            raise NotReadyError(self.load_error or "model is loading")
        return self.service


STATE = web.AppKey("state", AppState)
