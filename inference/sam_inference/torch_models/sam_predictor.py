"""The real predictor: segment_anything's SAM on torch (built by `factory.build_predictor`).

Preprocessing is SamPredictor.set_image's, step for step (cvat-protocol §2.2): `ResizeLongestSide.apply_image`
(PIL bilinear antialiased resize to longest side 1024), HWC→NCHW, `Sam.preprocess` (normalise, zero-pad to
1024x1024), then the image encoder prepared by `engine` for the resolved plan (engine + precision, `auto`
decided on the hardware found at load). Batches concatenate those NCHW tensors; the embedding is float32
whatever the precision. Mask decoding is `SamPredictor.predict` on a stored embedding (with the previous
click's low-res logits as `mask_input` when the service has them), upsampling only the best-scored mask. On the
CPU (`mask_decoder` auto) the prompt encoder and mask decoder run in OpenVINO in bfloat16 where the CPU has AMX
(`openvino_decoder`), else in onnxruntime (`onnx_decoder`), and the mask is upsampled in one pass over its window
(`mask_upsampling`); elsewhere, or with `mask_decoder="torch"`, in PyTorch with upstream's `postprocess_masks`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

from ..predictor import EMBEDDING_SHAPE, LOW_RES_SHAPE, Embedding, ImageFeatures, MaskResult, PreparedImage, Prompts
from ..settings import MaskDecoderChoice
from .devices import check_device
from .engine.encoder import build_encoder
from .engine.openvino_encoder import (
    OpenVinoEncoder,
    ReleasedImageEncoder,
    build_openvino_encoder,
    is_prepared,
    prepared_ir,
)
from .engine.plan import CpuFeatures, EngineChoice, EnginePlan, Precision, PrecisionChoice, cpu_features, resolve_plan
from .mask_upsampling import axis_map, upsample_mask
from .model import load_sam
from .onnx_decoder import LowResDecoder, OnnxLowResDecoder, prompt_points
from .openvino_decoder import OpenVinoLowResDecoder
from .predictor_base import TorchPredictorBase, best_mask

MaskDecoder = Literal["torch", "onnxruntime", "openvino"]

log = logging.getLogger(__name__)


def use_multimask(prompts: Prompts) -> bool:
    """SamOnnxModel's rule: multimask output when at most 2 prompt tokens (clicks + box corners or the
    padding point SamPredictor adds without a box); the best-scored of the three masks is returned."""
    tokens = len(prompts.points) + (2 if prompts.box is not None else 1)
    return tokens <= 2


def resolve_mask_decoder(choice: MaskDecoderChoice, device: str, features: CpuFeatures | None = None) -> MaskDecoder:
    """`auto` on the CPU: OpenVINO in bfloat16 where it has AMX (a 1080p click 13.9 ms against onnxruntime's 24.9 ms
    there, bench_masks.py), else onnxruntime (about twice as fast as eager PyTorch; OpenVINO's bfloat16 on
    AVX512_BF16 without AMX was not measured); PyTorch on a GPU. `features`: this machine's (`cpu_features()`)
    unless given."""
    if choice != "auto":
        return choice
    if device != "cpu":
        return "torch"
    return "openvino" if (features or cpu_features()).amx_bf16 else "onnxruntime"


class SamEncoderPredictor(TorchPredictorBase):
    """SAM image encoder + prompt decoder for one variant/checkpoint on one device."""

    def __init__(
        self,
        variant: str,
        checkpoint: Path,
        device: str = "cpu",
        precision: PrecisionChoice = "float32",
        warm_up_batch: int = 1,
        model: Sam | None = None,
        engine: EngineChoice = "torch",
        mask_decoder: MaskDecoderChoice = "auto",
    ) -> None:
        super().__init__(device)
        self.variant = variant
        self.checkpoint = Path(checkpoint)
        self.precision = precision
        self.engine = engine
        self.mask_decoder = mask_decoder
        self._low_res_decoder: LowResDecoder | None = None
        self.plan: EnginePlan | None = None
        self._encoder: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.warm_up_batch = warm_up_batch
        self._model: Sam | None = model
        self._transform = ResizeLongestSide(1024)

    @property
    def model(self) -> Sam:
        if self._model is None:
            raise RuntimeError("model is not loaded")
        return self._model

    def load(self) -> None:
        with self._lock:
            if self._ready:
                return
            check_device(self.device_name)
            plan = resolve_plan(self.engine, self.precision, self.device_name, self._openvino_prepared)
            owned = self._model is None  # a model given in memory stays the caller's, whole
            if self._model is None:
                self._model = load_sam(self.variant, self.checkpoint)
            self._model = self._model.to(self.device).eval()
            self._encoder = self._build_encoder(self._model, plan)
            if owned and isinstance(self._encoder, OpenVinoEncoder) and self._encoder.standalone:
                self._model.image_encoder = ReleasedImageEncoder(self._model.image_encoder.img_size)
            with torch.inference_mode():  # a constant of the model: upstream recomputes it (sin/cos) per click
                self._dense_pe = self._model.prompt_encoder.get_dense_pe()
            decoder = resolve_mask_decoder(self.mask_decoder, self.device.type)
            if decoder == "onnxruntime":
                self._low_res_decoder = OnnxLowResDecoder(self._model, torch.get_num_threads())
            elif decoder == "openvino":
                self._low_res_decoder = OpenVinoLowResDecoder(self._model, torch.get_num_threads())
            self.plan = plan
            log.info("Prepared encoder %s, mask decoder %s", plan.describe(), decoder)
            self._ready = True

    def _build_encoder(self, model: Sam, plan: EnginePlan) -> Callable[[torch.Tensor], torch.Tensor]:
        if plan.engine != "openvino":
            return build_encoder(model.image_encoder, plan)
        # The converted (and quantized) IR is kept beside the checkpoint (the pod's model cache, a PVC when the
        # SamModel has one); a model given in memory (tests, bench) is prepared every time.
        from_file = self.checkpoint.is_file()
        cached = prepared_ir(self.checkpoint, self.variant, plan.precision) if from_file else None
        return build_openvino_encoder(model.image_encoder, plan, self._encoder_input, cached)

    def _openvino_prepared(self, precision: Precision) -> bool:
        """Engine `auto` on the CPU runs openvino where this checkpoint file's IR is already prepared."""
        return is_prepared(self.checkpoint, self.variant, precision)

    def _encoder_input(self, image: np.ndarray) -> np.ndarray:
        """An HxWx3 uint8 image as the encoder's input, exactly as `embed_batch` makes it (calibration)."""
        with torch.inference_mode():
            return np.asarray(self._input_tensor(self.preprocess(image)).cpu().numpy(), dtype=np.float32)

    def _input_tensor(self, item: PreparedImage) -> torch.Tensor:
        """SamPredictor.set_image's tensor: HWC→NCHW on the device, then `Sam.preprocess` (normalise, pad)."""
        host = torch.as_tensor(item.data)
        if self.device.type == "cuda":  # pinned, so the copy is a DMA that overlaps the queue's other work
            host = host.pin_memory()
        image = host.to(self.device, non_blocking=True).permute(2, 0, 1).contiguous()[None, :, :, :]
        return torch.as_tensor(self.model.preprocess(image))

    def warm_up(self) -> None:
        black = np.zeros((600, 800, 3), dtype=np.uint8)
        prepared = self.preprocess(black)
        sizes = {1, self.warm_up_batch} if self.device.type == "cuda" else {1}
        for size in sorted(sizes):
            features = self.embed_batch([prepared] * size)[0]
        self.decode_masks(Embedding(features.image_embed, 600, 800), Prompts(points=((400.0, 300.0),), labels=(1,)))

    def preprocess(self, image: np.ndarray) -> PreparedImage:
        height, width = image.shape[:2]
        resized = self._transform.apply_image(image)  # exactly SamPredictor.set_image's resize
        return PreparedImage(data=resized, height=height, width=width)

    @torch.inference_mode()
    def embed_batch(self, batch: Sequence[PreparedImage]) -> list[ImageFeatures]:
        if self._encoder is None:
            raise RuntimeError("model is not loaded")
        features = self._encoder(torch.cat([self._input_tensor(item) for item in batch], dim=0))
        out = features.float().cpu().numpy()
        return [ImageFeatures(np.ascontiguousarray(out[i : i + 1], dtype=np.float32)) for i in range(out.shape[0])]

    @torch.inference_mode()
    def decode_masks(self, embedding: Embedding, prompts: Prompts, mask_input: np.ndarray | None = None) -> MaskResult:
        if embedding.array.shape != EMBEDDING_SHAPE:
            raise ValueError(f"embedding has shape {embedding.array.shape}, expected {EMBEDDING_SHAPE}")
        if mask_input is not None and mask_input.shape != LOW_RES_SHAPE:
            raise ValueError(f"mask_input has shape {mask_input.shape}, expected {LOW_RES_SHAPE}")
        size = (embedding.height, embedding.width)
        coords = labels = box = None
        if prompts.points:  # SamPredictor.predict's transforms to the 1024-pixel input frame
            coords = self._transform.apply_coords(np.asarray(prompts.points, dtype=np.float32).reshape(-1, 2), size)
            labels = np.asarray(prompts.labels, dtype=np.int64)
        if prompts.box is not None:
            box = self._transform.apply_boxes(np.asarray(prompts.box, dtype=np.float32), size)
        if self._low_res_decoder is not None:
            score, low = self._low_res_decoder(embedding.array, *prompt_points(coords, labels, box), mask_input)
            input_h, input_w = ResizeLongestSide.get_preprocess_shape(size[0], size[1], 1024)
            rows = axis_map(LOW_RES_SHAPE[1], size[0], 1024, input_h)
            cols = axis_map(LOW_RES_SHAPE[2], size[1], 1024, input_w)
            mask = upsample_mask(torch.from_numpy(low[0]), rows, cols, self.model.mask_threshold)
            return MaskResult(mask=mask, score=score, low_res=low)
        return self._decode_in_torch(embedding, coords, labels, box, mask_input)

    def _decode_in_torch(
        self,
        embedding: Embedding,
        coords: np.ndarray | None,
        labels: np.ndarray | None,
        box: np.ndarray | None,
        mask_input: np.ndarray | None,
    ) -> MaskResult:
        # SamPredictor.predict step for step, except that only the best-scored mask is upsampled (twice, to
        # 1024 and then to the frame): the same mask, a third of the upsampling of a multimask answer.
        model, device = self.model, self.device
        size = (embedding.height, embedding.width)
        points = None
        if coords is not None and labels is not None:
            points = (
                torch.as_tensor(coords, dtype=torch.float, device=device)[None, :, :],
                torch.as_tensor(labels, dtype=torch.int, device=device)[None, :],
            )
        boxes = None if box is None else torch.as_tensor(box, dtype=torch.float, device=device)[None, :]
        masks = None if mask_input is None else torch.as_tensor(mask_input, dtype=torch.float, device=device)[None]
        sparse, dense = model.prompt_encoder(points=points, boxes=boxes, masks=masks)
        tokens = (0 if coords is None else len(coords)) + (2 if box is not None else 1)
        low_res, scores = model.mask_decoder(
            image_embeddings=torch.as_tensor(embedding.array, device=device),
            image_pe=model.prompt_encoder.get_dense_pe() if self._dense_pe is None else self._dense_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=tokens <= 2,  # use_multimask
        )
        input_size = ResizeLongestSide.get_preprocess_shape(embedding.height, embedding.width, 1024)
        return best_mask(  # SamPredictor returns the low-res logits unclamped
            low_res, scores, lambda chosen: model.postprocess_masks(chosen, input_size, size), model.mask_threshold
        )

    def _release(self) -> None:
        self._model = None
        self._encoder = None
        self._low_res_decoder = None
