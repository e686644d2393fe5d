"""SAM's prompt encoder + mask decoder in onnxruntime, for masks mode on the CPU.

The decoder is exported from the loaded model at start-up (in memory, a few seconds) as
`lean_mask_decoder.LeanLowResDecoder`: upstream's `SamOnnxModel` without its upsampling, rewritten for fewer
FLOPs (cross attention in low-rank form, channel-last upscaling). It returns the best mask's 256x256 logits and
its predicted IoU; `mask_upsampling` makes the frame's mask. Two graphs are exported, with and without the
low-rank attention, and each call runs the one with fewer FLOPs for its number of points.

Prompts follow `SamPredictor.predict` exactly: clicks in the resized frame's coordinates, then the box as
two points labelled 2 and 3; without a box a padding point labelled -1 (what `PromptEncoder` appends).
`SamOnnxModel.select_masks` picks the best of the three multimask outputs at up to 2 prompt tokens and
mask 0 otherwise: the service's `use_multimask` rule.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from segment_anything.modeling import Sam

from .export import DEFAULT_OPSET, dummy_inputs
from .lean_mask_decoder import EXACT, GraphForm, LeanLowResDecoder, low_rank_max_points

INPUTS = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input")
NO_MASK = np.zeros((1, 1, 256, 256), dtype=np.float32)


def export_low_res_decoder(
    model: Sam, low_rank: bool = True, opset: int = DEFAULT_OPSET, form: GraphForm = EXACT
) -> bytes:
    """The ONNX bytes of `LeanLowResDecoder(model, low_rank, form)` (number of points dynamic)."""
    example = dummy_inputs()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's tracer and deprecation warnings
        torch.onnx.export(
            LeanLowResDecoder(model, low_rank, form).cpu().eval(),
            tuple(example[name] for name in INPUTS),
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter (dynamo=False) writes to file objects
            opset_version=opset,
            do_constant_folding=True,
            input_names=list(INPUTS),
            output_names=["iou_predictions", "low_res_masks"],
            dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
            dynamo=False,
        )
    return buffer.getvalue()


class LowResDecoder:
    """Decodes prompts (already in the 1024-pixel input frame) against an embedding with one of two exported graphs
    (with and without the low-rank attention); a runtime supplies `_run`."""

    def __init__(self, model: Sam) -> None:
        self._low_rank_max_points = low_rank_max_points(model)

    def __call__(
        self,
        embedding: np.ndarray,
        coords: np.ndarray,
        labels: np.ndarray,
        mask_input: np.ndarray | None,
    ) -> tuple[float, np.ndarray]:
        """(predicted IoU, low-res logits [1,256,256]) of the selected mask; `coords` (N x 2), `labels` (N)."""
        low_rank = len(coords) <= self._low_rank_max_points
        score, low_res = self._run(low_rank, decoder_feeds(embedding, coords, labels, mask_input))
        return float(score[0, 0]), np.array(low_res[0], dtype=np.float32)  # a copy: the runtime may reuse its buffer

    def _run(self, low_rank: bool, feeds: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """(iou_predictions, low_res_masks) of the graph `low_rank` names."""
        raise NotImplementedError


class OnnxLowResDecoder(LowResDecoder):
    """The graphs in onnxruntime."""

    def __init__(self, model: Sam, threads: int) -> None:
        super().__init__(model)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # No busy-waiting between calls: the encoder's threads share these cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._sessions = {
            low_rank: ort.InferenceSession(
                export_low_res_decoder(model, low_rank), options, providers=["CPUExecutionProvider"]
            )
            for low_rank in (True, False)
        }

    def _run(self, low_rank: bool, feeds: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        scores, low_res = self._sessions[low_rank].run(None, feeds)
        return scores, low_res


def decoder_feeds(
    embedding: np.ndarray, coords: np.ndarray, labels: np.ndarray, mask_input: np.ndarray | None
) -> dict[str, Any]:
    """The exported decoder's inputs (`INPUTS`) for one prompt: `coords` (N x 2), `labels` (N)."""
    return {
        "image_embeddings": np.ascontiguousarray(embedding, dtype=np.float32),
        "point_coords": np.ascontiguousarray(coords, dtype=np.float32)[None],
        "point_labels": np.ascontiguousarray(labels, dtype=np.float32)[None],
        "mask_input": NO_MASK if mask_input is None else np.asarray(mask_input, dtype=np.float32)[None],
        "has_mask_input": np.array([0.0 if mask_input is None else 1.0], dtype=np.float32),
    }


def prompt_points(
    clicks: np.ndarray | None, labels: np.ndarray | None, box: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """`SamPredictor`'s prompt tokens as points: clicks, then box corners (2, 3), else a padding point (-1)."""
    coords = [np.asarray(clicks, dtype=np.float32).reshape(-1, 2)] if clicks is not None else []
    kinds = [np.asarray(labels, dtype=np.float32).reshape(-1)] if labels is not None else []
    if box is not None:
        coords.append(np.asarray(box, dtype=np.float32).reshape(2, 2))
        kinds.append(np.array([2.0, 3.0], dtype=np.float32))
    else:
        coords.append(np.zeros((1, 2), dtype=np.float32))
        kinds.append(np.array([-1.0], dtype=np.float32))
    return np.concatenate(coords), np.concatenate(kinds)
