"""The model layer's interface: the `Predictor` protocol the service talks to, and the types it exchanges.

Nothing here imports torch, and nothing here knows HTTP. The torch implementation lives in `torch_models`;
the composition root (`__main__`) injects its factory into `create_app`, and tests pass any object that
satisfies `Predictor`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from .settings import InferenceSettings

EMBEDDING_SHAPE = (1, 256, 64, 64)
#: SAM 2's high-resolution feature maps (after the decoder's conv_s0 / conv_s1), in CVAT #8610's order.
HIGH_RES_SHAPES = ((1, 32, 256, 256), (1, 64, 128, 128))
#: Low-resolution mask logits of one mask (both families), fed back as `mask_input`.
LOW_RES_SHAPE = (1, 256, 256)


@dataclass(frozen=True)
class Prompts:
    """Decoder prompts in original image pixels (label 1 positive, 0 negative; box as x1, y1, x2, y2)."""

    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None

    @property
    def empty(self) -> bool:
        return not self.points and self.box is None


@dataclass(frozen=True)
class ImageFeatures:
    """What the encoder computes for one image: `image_embed` (float32, EMBEDDING_SHAPE) plus, for SAM 2, the
    two high-resolution feature maps its mask decoder also reads ([1,32,256,256] and [1,64,128,128], float32)."""

    image_embed: np.ndarray
    high_res: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True)
class Embedding:
    """One image's encoder output (`array` is the image embedding, `high_res` SAM 2's feature maps, empty for
    SAM 1) and the original image size. One cache entry; `nbytes` counts every array."""

    array: np.ndarray
    height: int
    width: int
    high_res: tuple[np.ndarray, ...] = ()

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes) + sum(int(a.nbytes) for a in self.high_res)


@dataclass(frozen=True)
class PreparedImage:
    """An image after `Predictor.preprocess`: whatever the predictor needs, plus the original size."""

    data: Any
    height: int
    width: int


@dataclass(frozen=True)
class MaskResult:
    """A full-resolution boolean mask (H x W), its predicted IoU, and its low-resolution logits ([1,256,256]
    float32: what the next click of the same interaction feeds back as `mask_input`)."""

    mask: np.ndarray
    score: float
    low_res: np.ndarray | None = None


class Predictor(Protocol):
    """What the service needs from a model. Every method but `ready` may block (run off the loop)."""

    @property
    def ready(self) -> bool: ...

    @property
    def cpu_bound(self) -> bool:
        """True when the encoder computes on the CPU (image decoding then takes turns with it)."""

    def load(self) -> None:
        """Load weights (idempotent)."""

    def warm_up(self) -> None:
        """Run the encoder and decoder once so the first request is not slow."""

    def preprocess(self, image: np.ndarray) -> PreparedImage:
        """HxWx3 uint8 RGB → model input (thread-safe; runs in the decode pool)."""

    def embed_batch(self, batch: Sequence[PreparedImage]) -> list[ImageFeatures]:
        """Encode a batch; one `ImageFeatures` per input, same order."""

    def decode_masks(self, embedding: Embedding, prompts: Prompts, mask_input: np.ndarray | None = None) -> MaskResult:
        """Decode prompts against an embedding with the family's predictor semantics (SamPredictor.predict,
        SAM2ImagePredictor.predict), `mask_input` being the low-res logits of a previous answer (thread-safe)."""

    def memory_stats(self) -> dict[tuple[str, str], int]:
        """{(device, "allocated"|"reserved"): bytes} where a GPU is used, else {}."""

    def close(self) -> None:
        """Release the model."""


#: Builds the predictor for a process's settings; called once, inside the app's model-loading task.
PredictorFactory = Callable[["InferenceSettings"], Predictor]
