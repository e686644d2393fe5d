"""`sam-inference export-decoder`: the prompt encoder + mask decoder of a checkpoint as ONNX.

The main output is CVAT's decoder format (cvat-protocol §6.4): upstream `SamOnnxModel` with
`return_single_mask`, plus a post-processing patch that thresholds the full-resolution mask at logit > 0,
casts it to uint8 and crops it to the tight bounding box of the positive pixels. Outputs, in order:
`masks` uint8 [1,1,h',w'], `iou_predictions` float32 [1,1], `low_res_masks` float32 [1,1,256,256],
`xtl`, `ytl`, `xbr`, `ybr` int64 scalars (inclusive bounds in original image pixels).

An empty mask yields a [1,1,0,0] `masks` with bounds (0, 0, -1, -1).

Optionally it also writes the plain upstream format (`masks` logits, `iou_predictions`,
`low_res_masks`), and dynamically quantises both. Each file is checked by one onnxruntime run, written
atomically, and stamped with the checkpoint's sha256 so that a pod restart skips a redundant export.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from segment_anything.modeling import Sam
from segment_anything.utils.onnx import SamOnnxModel
from torch.nn import functional as F

from .model import load_sam

log = logging.getLogger(__name__)

CVAT_OUTPUTS = ["masks", "iou_predictions", "low_res_masks", "xtl", "ytl", "xbr", "ybr"]
UPSTREAM_OUTPUTS = ["masks", "iou_predictions", "low_res_masks"]
INPUT_NAMES = [
    "image_embeddings",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
    "orig_im_size",
]
CHECKPOINT_DIGEST_KEY = "sam_inference.checkpoint_sha256"
DEFAULT_OPSET = 17


class TraceableSamOnnxModel(SamOnnxModel):  # type: ignore[misc]
    """Upstream `SamOnnxModel` whose crop to the pre-padded size stays dynamic when traced.

    Upstream slices with `int(prepadded_size[0])`; with current torch the TorchScript tracer freezes that
    into a constant (the dummy input's 1500x2250 → 683x1024), which silently corrupts masks for every
    other aspect ratio. `index_select` over a Range keeps it an input-dependent op. Eager results are
    identical to upstream's.
    """

    def mask_postprocessing(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        masks = F.interpolate(masks, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)
        prepadded_size = self.resize_longest_image_size(orig_im_size, self.img_size)
        masks = masks.index_select(2, torch.arange(prepadded_size[0], dtype=torch.int64))
        masks = masks.index_select(3, torch.arange(prepadded_size[1], dtype=torch.int64))
        orig_im_size = orig_im_size.to(torch.int64)
        h, w = orig_im_size[0], orig_im_size[1]
        return F.interpolate(masks, size=(h, w), mode="bilinear", align_corners=False)  # type: ignore[arg-type]


class CvatSamOnnxModel(TraceableSamOnnxModel):
    """`SamOnnxModel` with CVAT's output patch: thresholded uint8 mask cropped to its bounding box."""

    def __init__(self, model: Sam) -> None:
        super().__init__(model, return_single_mask=True)

    @torch.no_grad()
    def forward(  # type: ignore[override]
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        orig_im_size: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        upscaled, scores, low_res = super().forward(
            image_embeddings, point_coords, point_labels, mask_input, has_mask_input, orig_im_size
        )
        binary = (upscaled > self.model.mask_threshold).to(torch.uint8)
        ytl, ybr = _extent(binary.amax(dim=3)[0, 0])
        xtl, xbr = _extent(binary.amax(dim=2)[0, 0])
        # index_select over a Range keeps the crop dynamic in the traced graph (python slicing would not).
        rows = torch.arange(ytl, ybr + 1, dtype=torch.int64)  # type: ignore[call-overload]
        cols = torch.arange(xtl, xbr + 1, dtype=torch.int64)  # type: ignore[call-overload]
        cropped = binary.index_select(2, rows).index_select(3, cols)
        return cropped, scores, low_res, xtl, ytl, xbr, ybr


def _extent(occupied: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last index where the 1-D uint8 `occupied` is nonzero; (0, -1) when it is all zero."""
    size = occupied.shape[0]
    index = torch.arange(size, dtype=torch.int64)
    hit = occupied > 0
    first = torch.where(hit, index, torch.full_like(index, size)).min()
    last = torch.where(hit, index, torch.full_like(index, -1)).max()
    first = torch.where(last < 0, torch.zeros_like(first), first)
    return first, last


def dummy_inputs(embed_dim: int = 256, embed_size: int = 64, num_points: int = 3) -> dict[str, torch.Tensor]:
    """Example decoder inputs (random embedding, random points in a 1500x2250 image)."""
    gen = torch.Generator().manual_seed(0)
    return {
        "image_embeddings": torch.randn(1, embed_dim, embed_size, embed_size, generator=gen),
        "point_coords": torch.randint(0, 1024, (1, num_points, 2), generator=gen).to(torch.float32),
        "point_labels": torch.randint(0, 4, (1, num_points), generator=gen).to(torch.float32),
        "mask_input": torch.zeros(1, 1, 4 * embed_size, 4 * embed_size),
        "has_mask_input": torch.tensor([0.0]),
        "orig_im_size": torch.tensor([1500.0, 2250.0]),
    }


def _export(module: torch.nn.Module, output: Path, output_names: list[str], opset: int) -> None:
    inputs = dummy_inputs()
    dynamic_axes: dict[str, dict[int, str]] = {
        "point_coords": {1: "num_points"},
        "point_labels": {1: "num_points"},
    }
    if output_names is CVAT_OUTPUTS:
        dynamic_axes["masks"] = {2: "mask_height", 3: "mask_width"}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # type: ignore[attr-defined]
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        # SamOnnxModel only exports with the TorchScript exporter; dynamo (the default since torch 2.9) fails.
        torch.onnx.export(
            module,
            tuple(inputs.values()),
            str(output),
            export_params=True,
            verbose=False,
            opset_version=opset,
            do_constant_folding=True,
            input_names=INPUT_NAMES,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            dynamo=False,
        )


def _stamp(path: Path, checkpoint_digest: str) -> None:
    import onnx

    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = CHECKPOINT_DIGEST_KEY, checkpoint_digest
    onnx.save(model, str(path))


def read_stamp(path: Path) -> str | None:
    """The checkpoint sha256 recorded in an exported decoder, or None."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        return None
    return next((p.value for p in model.metadata_props if p.key == CHECKPOINT_DIGEST_KEY), None)


def _quantize(path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = path.with_name(path.name + ".quant.tmp")
    quantize_dynamic(str(path), str(tmp), weight_type=QuantType.QUInt8)
    tmp.replace(path)


def verify_decoder(path: Path, output_names: list[str]) -> dict[str, np.ndarray]:
    """Run `path` once in onnxruntime on dummy inputs; check output names, dtypes and shapes."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    if names != output_names:
        raise RuntimeError(f"{path}: outputs {names}, expected {output_names}")
    feeds = {k: v.numpy() for k, v in dummy_inputs().items()}
    results = dict(zip(names, session.run(None, feeds), strict=True))
    if results["low_res_masks"].shape != (1, 1, 256, 256):
        raise RuntimeError(f"{path}: low_res_masks has shape {results['low_res_masks'].shape}")
    if output_names == CVAT_OUTPUTS:
        if results["masks"].dtype != np.uint8:
            raise RuntimeError(f"{path}: masks dtype {results['masks'].dtype}, CVAT needs uint8")
        for key in ("xtl", "ytl", "xbr", "ybr"):
            if results[key].dtype != np.int64 or results[key].shape != ():
                raise RuntimeError(f"{path}: {key} must be an int64 scalar")
    return results


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 (hex) of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _write(module: torch.nn.Module, output: Path, names: list[str], opset: int, quantize: bool, stamp: str) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    try:
        _export(module, tmp, names, opset)
        if quantize:
            _quantize(tmp)
        _stamp(tmp, stamp)
        verify_decoder(tmp, names)
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)


def export_decoder(
    checkpoint: Path,
    variant: str,
    output: Path,
    upstream_output: Path | None = None,
    quantize: bool = False,
    opset: int = DEFAULT_OPSET,
    force: bool = False,
) -> dict[str, Any]:
    """Export the CVAT-format decoder (and optionally the upstream one); returns a summary dict."""
    digest = file_sha256(checkpoint)
    stamp = f"{digest}:{variant}:{'q' if quantize else 'f'}"
    targets = [(output, CVAT_OUTPUTS)] + ([(upstream_output, UPSTREAM_OUTPUTS)] if upstream_output else [])
    if not force and all(p.exists() and read_stamp(p) == stamp for p, _ in targets):
        log.info("Skipped decoder export: outputs match checkpoint %s", digest[:12])
        return {"skipped": True, "checkpoint_sha256": digest}
    sam = load_sam(variant, checkpoint)
    _write(CvatSamOnnxModel(sam), output, CVAT_OUTPUTS, opset, quantize, stamp)
    if upstream_output is not None:
        upstream = TraceableSamOnnxModel(sam, return_single_mask=True)
        _write(upstream, upstream_output, UPSTREAM_OUTPUTS, opset, quantize, stamp)
    log.info("Exported decoder %s", output)
    return {"skipped": False, "checkpoint_sha256": digest, "output": str(output)}
