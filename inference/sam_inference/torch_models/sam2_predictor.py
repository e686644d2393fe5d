"""The SAM 2.1 predictor: `SAM2ImagePredictor`'s semantics behind the service's `Predictor` protocol.

Encoding is `SAM2ImagePredictor.set_image` step for step (sam2-and-prefetch.md §A1): `SAM2Transforms`
(ToTensor, square bilinear antialiased resize to 1024x1024, ImageNet normalisation), `forward_image` (which
already applies the decoder's conv_s0/conv_s1 to the two high-res FPN levels), `_prepare_backbone_features`,
`+ no_mem_embed` on the lowest-resolution level, reshaped to [1,256,64,64] and the two high-res maps. One
`ImageFeatures` holds all three (16 MiB float32), so one cache entry serves every later click.

Decoding is `SAM2ImagePredictor.predict` on restored features: per-axis click scaling (x·1024/W, y·1024/H),
box corners as points labelled 2 and 3 placed before the clicks, the prompt encoder's padding point, the
mask decoder with the high-res features, then `postprocess_masks` (bilinear to the frame, logits > 0) of the
best-scored mask only, and its low-res logits clamped to ±32 (what `predict` returns for the next click).
Multimask output follows the service's rule for both families (`use_multimask`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from sam2.modeling.sam2_base import SAM2Base
from sam2.utils.transforms import SAM2Transforms

from ..predictor import (
    EMBEDDING_SHAPE,
    HIGH_RES_SHAPES,
    LOW_RES_SHAPE,
    Embedding,
    ImageFeatures,
    MaskResult,
    PreparedImage,
    Prompts,
)
from .devices import check_device
from .predictor_base import TorchPredictorBase, best_mask
from .sam2_model import load_sam2
from .sam_predictor import use_multimask

log = logging.getLogger(__name__)

AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
#: `SAM2ImagePredictor._bb_feat_sizes`: the three backbone levels, high-res first.
FEATURE_SIZES = [(256, 256), (128, 128), (64, 64)]


def resolve_sam2_precision(precision: str, device: str) -> str:
    """The encoder's compute precision for SAM 2: float32, or bfloat16/float16 under autocast (the official GPU
    usage is bfloat16 autocast). `auto`: bfloat16 on a GPU that has it, else float32."""
    if precision == "auto":
        gpu_bf16 = device == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return "bfloat16" if gpu_bf16 else "float32"
    if precision == "int8":
        raise ValueError("precision int8 (dynamic int8 ViT Linear layers) is for family sam; sam2 runs float32 or bf16")
    if precision == "float16" and device != "cuda":
        raise ValueError("precision float16 needs device cuda")
    return precision


class Sam2EncoderPredictor(TorchPredictorBase):
    """SAM 2.1 image encoder + prompt decoder for one variant/checkpoint on one device."""

    def __init__(
        self,
        variant: str,
        checkpoint: Path,
        device: str = "cpu",
        precision: str = "float32",
        warm_up_batch: int = 1,
        model: SAM2Base | None = None,
        engine: str = "auto",
    ) -> None:
        if engine not in ("auto", "torch"):
            raise ValueError(f"engine {engine!r} is for family sam (ViT); sam2 runs the upstream modules (torch)")
        super().__init__(device)
        self.variant = variant
        self.checkpoint = Path(checkpoint)
        self.precision = precision
        self.compute_precision: str | None = None
        self.warm_up_batch = warm_up_batch
        self._model: SAM2Base | None = model
        self._transforms: SAM2Transforms | None = None

    @property
    def model(self) -> SAM2Base:
        if self._model is None:
            raise RuntimeError("model is not loaded")
        return self._model

    @property
    def transforms(self) -> SAM2Transforms:
        if self._transforms is None:
            raise RuntimeError("model is not loaded")
        return self._transforms

    def load(self) -> None:
        with self._lock:
            if self._ready:
                return
            check_device(self.device_name)
            self.compute_precision = resolve_sam2_precision(self.precision, self.device_name)
            if self._model is None:
                self._model = load_sam2(self.variant, self.checkpoint)
            self._model = self._model.to(self.device).eval()
            self._transforms = SAM2Transforms(resolution=self._model.image_size, mask_threshold=0.0)
            with torch.inference_mode():  # a constant of the model; upstream recomputes it per click
                self._dense_pe = self._model.sam_prompt_encoder.get_dense_pe()
            log.info("Prepared SAM 2.1 %s encoder (%s on %s)", self.variant, self.compute_precision, self.device)
            self._ready = True

    def warm_up(self) -> None:
        prepared = self.preprocess(np.zeros((600, 800, 3), dtype=np.uint8))
        sizes = {1, self.warm_up_batch} if self.device.type == "cuda" else {1}
        for size in sorted(sizes):
            features = self.embed_batch([prepared] * size)[0]
        embedding = Embedding(features.image_embed, 600, 800, high_res=features.high_res)
        self.decode_masks(embedding, Prompts(points=((400.0, 300.0),), labels=(1,)))

    @torch.inference_mode()
    def preprocess(self, image: np.ndarray) -> PreparedImage:
        height, width = image.shape[:2]
        return PreparedImage(data=self.transforms(image), height=height, width=width)  # exactly set_image's

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        dtype = AUTOCAST_DTYPES.get(self.compute_precision or "float32")
        if dtype is None:
            yield
            return
        with torch.autocast(device_type=self.device.type, dtype=dtype):
            yield

    @torch.inference_mode()
    def embed_batch(self, batch: Sequence[PreparedImage]) -> list[ImageFeatures]:
        model = self.model
        images = torch.stack([item.data for item in batch]).to(self.device)
        with self._autocast():
            backbone_out = model.forward_image(images)
            _, vision_feats, _, _ = model._prepare_backbone_features(backbone_out)
            if model.directly_add_no_mem_embed:
                vision_feats[-1] = vision_feats[-1] + model.no_mem_embed
        size = len(batch)
        levels = [
            feat.permute(1, 2, 0).reshape(size, -1, *hw).float().cpu().numpy()
            for feat, hw in zip(vision_feats, FEATURE_SIZES, strict=True)
        ]
        return [
            ImageFeatures(
                image_embed=np.ascontiguousarray(levels[2][i : i + 1]),
                high_res=(np.ascontiguousarray(levels[0][i : i + 1]), np.ascontiguousarray(levels[1][i : i + 1])),
            )
            for i in range(size)
        ]

    def _check(self, embedding: Embedding, mask_input: np.ndarray | None) -> None:
        shapes = (embedding.array.shape, *(a.shape for a in embedding.high_res))
        if shapes != (EMBEDDING_SHAPE, *HIGH_RES_SHAPES):
            raise ValueError(f"SAM 2 features have shapes {shapes}, expected {(EMBEDDING_SHAPE, *HIGH_RES_SHAPES)}")
        if mask_input is not None and mask_input.shape != LOW_RES_SHAPE:
            raise ValueError(f"mask_input has shape {mask_input.shape}, expected {LOW_RES_SHAPE}")

    def _points(self, prompts: Prompts, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """`_prep_prompts` + the box merge of `_predict`: box corners (labels 2, 3) first, then the clicks."""
        device, transforms = self.device, self.transforms
        coords: list[torch.Tensor] = []
        labels: list[torch.Tensor] = []
        if prompts.box is not None:
            box = torch.as_tensor(prompts.box, dtype=torch.float, device=device)
            coords.append(transforms.transform_boxes(box, normalize=True, orig_hw=size).reshape(-1, 2, 2))
            labels.append(torch.tensor([[2, 3]], dtype=torch.int, device=device))
        if prompts.points:
            points = torch.as_tensor(np.asarray(prompts.points, dtype=np.float32).reshape(-1, 2), device=device)
            coords.append(transforms.transform_coords(points, normalize=True, orig_hw=size)[None])
            labels.append(torch.as_tensor(prompts.labels, dtype=torch.int, device=device)[None])
        if not coords:
            return None
        return torch.cat(coords, dim=1), torch.cat(labels, dim=1)

    @torch.inference_mode()
    def decode_masks(self, embedding: Embedding, prompts: Prompts, mask_input: np.ndarray | None = None) -> MaskResult:
        self._check(embedding, mask_input)
        model, device = self.model, self.device
        size = (embedding.height, embedding.width)
        masks = None if mask_input is None else torch.as_tensor(mask_input, dtype=torch.float, device=device)[None]
        sparse, dense = model.sam_prompt_encoder(points=self._points(prompts, size), boxes=None, masks=masks)
        low_res, scores, _, _ = model.sam_mask_decoder(
            image_embeddings=torch.as_tensor(embedding.array, device=device),
            image_pe=model.sam_prompt_encoder.get_dense_pe() if self._dense_pe is None else self._dense_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=use_multimask(prompts),
            repeat_image=False,
            high_res_features=[torch.as_tensor(a, device=device) for a in embedding.high_res],
        )
        transforms = self.transforms  # SAM2ImagePredictor.predict clamps the low-res logits to ±32
        return best_mask(low_res, scores, lambda chosen: transforms.postprocess_masks(chosen, size), 0.0, clamp=32.0)

    def _release(self) -> None:
        self._model = None
        self._transforms = None
