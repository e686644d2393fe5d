"""The predictor factory `__main__` injects into `create_app`: settings → the torch predictor."""

from __future__ import annotations

from ..predictor import Predictor
from ..settings import InferenceSettings
from .sam_predictor import SamEncoderPredictor


def build_predictor(settings: InferenceSettings) -> Predictor:
    """The SAM predictor for `settings` (not loaded yet: the app loads it in its model-loading task)."""
    return SamEncoderPredictor(
        variant=settings.model_variant,
        checkpoint=settings.checkpoint_path,
        device=settings.device,
        precision=settings.precision,
        engine=settings.engine,
        warm_up_batch=settings.max_batch_size,
    )
