"""The predictor factory `__main__` injects into `create_app`: settings → the torch predictor of the family."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..predictor import Predictor
from ..settings import InferenceSettings
from .sam_predictor import SamEncoderPredictor

if TYPE_CHECKING:
    pass


def build_predictor(settings: InferenceSettings) -> Predictor:
    """The predictor for `settings` (not loaded yet: the app loads it in its model-loading task)."""
    common = {
        "variant": settings.model_variant,
        "checkpoint": settings.checkpoint_path,
        "device": settings.device,
        "precision": settings.precision,
        "engine": settings.engine,
        "warm_up_batch": settings.max_batch_size,
    }
    if settings.model_family == "sam2":
        from .sam2_predictor import Sam2EncoderPredictor  # imports sam2 (and Hydra) only for SAM 2 models

        return Sam2EncoderPredictor(**common)  # type: ignore[arg-type]
    # The onnxruntime decoder is exported at load (a second or more): only masks mode decodes on every click, so an
    # embedding-mode encoder (CVAT decodes in the browser) keeps the eager path for its occasional /v1/masks.
    decoder = settings.mask_decoder if settings.mode == "masks" or settings.mask_decoder != "auto" else "torch"
    return SamEncoderPredictor(**common, mask_decoder=decoder)  # type: ignore[arg-type]
