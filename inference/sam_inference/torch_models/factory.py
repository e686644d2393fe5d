"""The predictor factory `__main__` injects into `create_app`: settings → the torch predictor of the family."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..predictor import Predictor
from ..settings import InferenceSettings
from .sam_predictor import SamEncoderPredictor

if TYPE_CHECKING:
    from .sam2_predictor import Sam2EncoderPredictor


def build_predictor(settings: InferenceSettings) -> Predictor:
    """The predictor for `settings` (not loaded yet: the app loads it in its model-loading task)."""
    predictor_class: type[SamEncoderPredictor] | type[Sam2EncoderPredictor] = SamEncoderPredictor
    if settings.model_family == "sam2":
        from .sam2_predictor import Sam2EncoderPredictor  # imports sam2 (and Hydra) only for SAM 2 models

        predictor_class = Sam2EncoderPredictor
    return predictor_class(
        variant=settings.model_variant,
        checkpoint=settings.checkpoint_path,
        device=settings.device,
        precision=settings.precision,
        engine=settings.engine,
        warm_up_batch=settings.max_batch_size,
    )
