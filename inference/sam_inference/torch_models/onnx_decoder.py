"""SAM's prompt encoder + mask decoder in onnxruntime, for masks mode on the CPU.

The decoder is exported from the loaded model at start-up (in memory, a few seconds) as
`lean_mask_decoder.LeanLowResDecoder`: upstream's `SamOnnxModel` without its upsampling, rewritten for fewer
FLOPs (cross attention in low-rank form, channel-last upscaling). It returns the best mask's 256x256 logits and
its predicted IoU; `mask_upsampling` makes the frame's mask. Two graphs are exported, with and without the
low-rank attention, and each call runs the one with fewer FLOPs for its number of points; each in two forms, with
and without a mask input (a first click runs no mask downscaling).

Prompts follow `SamPredictor.predict` exactly: clicks in the resized frame's coordinates, then the box as
two points labelled 2 and 3; without a box a padding point labelled -1 (what `PromptEncoder` appends).
`SamOnnxModel.select_masks` picks the best of the three multimask outputs at up to 2 prompt tokens and
mask 0 otherwise: the service's `use_multimask` rule.
"""

from __future__ import annotations

import io
import itertools
import threading
import warnings
import weakref
from collections import OrderedDict
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from segment_anything.modeling import Sam

from .export import DEFAULT_OPSET, dummy_inputs
from .lean_mask_decoder import EXACT, GraphForm, LeanLowResDecoder, as_tokens, low_rank_max_points

INPUTS = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input")
#: The graphs a runtime decoder holds: (low-rank attention, a mask input given).
GRAPHS = tuple(itertools.product((True, False), (True, False)))
#: The runtimes' graphs read the embedding as image tokens (`LeanLowResDecoder.token_input`), under this name.
TOKENS = "image_tokens"
#: Embeddings whose image tokens a decoder keeps (4 MiB each): the frames being annotated now.
KEPT_TOKENS = 4


def graph_inputs(mask_prompt: bool | None, token_input: bool = False) -> tuple[str, ...]:
    """The inputs of a graph exported with `mask_prompt` and `token_input` (`LeanLowResDecoder`): all five, or the
    mask's alone; the first named `TOKENS` where it takes image tokens."""
    names = INPUTS if mask_prompt is None else INPUTS[:4] if mask_prompt else INPUTS[:3]
    return (TOKENS, *names[1:]) if token_input else names


def export_low_res_decoder(
    model: Sam,
    low_rank: bool = True,
    opset: int = DEFAULT_OPSET,
    form: GraphForm = EXACT,
    mask_prompt: bool | None = None,
    token_input: bool = False,
) -> bytes:
    """The ONNX bytes of `LeanLowResDecoder(model, low_rank, form, mask_prompt, token_input)` (number of points
    dynamic)."""
    example = dummy_inputs()
    if token_input:
        example[TOKENS] = as_tokens(example["image_embeddings"]).contiguous()
    inputs = graph_inputs(mask_prompt, token_input)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's tracer and deprecation warnings
        torch.onnx.export(
            LeanLowResDecoder(model, low_rank, form, mask_prompt, token_input).cpu().eval(),
            tuple(example[name] for name in inputs),
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter (dynamo=False) writes to file objects
            opset_version=opset,
            do_constant_folding=True,
            input_names=list(inputs),
            output_names=["iou_predictions", "low_res_masks"],
            dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
            dynamo=False,
        )
    return buffer.getvalue()


class ImageTokens:
    """The image tokens (1, N, C), C-contiguous float32, of the last `KEPT_TOKENS` embeddings decoded against:
    every click on a frame after the first reads them instead of laying the embedding out again (a 4 MiB
    transpose, ~0.9 ms in OpenVINO's graph here). Keyed by the array itself, held weakly (an id is trusted only
    while its array lives, and an embedding the service's cache drops takes its tokens with it at the next new
    embedding): an embedding is never written once made (the service's cache entries are not). Safe across
    threads."""

    def __init__(self, kept: int = KEPT_TOKENS) -> None:
        self._kept = kept
        self._entries: OrderedDict[int, tuple[weakref.ref[np.ndarray], np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, embedding: np.ndarray) -> np.ndarray:
        with self._lock:
            entry = self._entries.get(id(embedding))
            if entry is not None and entry[0]() is embedding:
                self._entries.move_to_end(id(embedding))
                return entry[1]
        source = torch.from_numpy(np.ascontiguousarray(embedding, dtype=np.float32))
        tokens = as_tokens(source).contiguous().numpy()  # torch's blocked transpose: numpy's is slower
        with self._lock:
            for key in [key for key, (ref, _) in self._entries.items() if ref() is None]:
                del self._entries[key]  # embeddings gone: their tokens are never asked for again
            self._entries[id(embedding)] = (weakref.ref(embedding), tokens)
            self._entries.move_to_end(id(embedding))
            while len(self._entries) > self._kept:
                self._entries.popitem(last=False)
        return tokens

    def __len__(self) -> int:
        """The embeddings whose tokens are kept now (a dead one's until the next new embedding)."""
        with self._lock:
            return len(self._entries)


class LowResDecoder:
    """Decodes prompts (already in the 1024-pixel input frame) against an embedding with one of four exported graphs
    (`GRAPHS`: with and without the low-rank attention, with and without a mask input); a runtime supplies `_run`."""

    def __init__(self, model: Sam) -> None:
        self._low_rank_max_points = low_rank_max_points(model)
        self._tokens = ImageTokens()

    def __call__(
        self,
        embedding: np.ndarray,
        coords: np.ndarray,
        labels: np.ndarray,
        mask_input: np.ndarray | None,
    ) -> tuple[float, np.ndarray]:
        """(predicted IoU, low-res logits [1,256,256]) of the selected mask; `coords` (N x 2), `labels` (N)."""
        graph = (len(coords) <= self._low_rank_max_points, mask_input is not None)
        score, low_res = self._run(graph, decoder_feeds(self._tokens(embedding), coords, labels, mask_input))
        return float(score[0, 0]), low_res[0]

    def _run(self, graph: tuple[bool, bool], feeds: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """(iou_predictions, low_res_masks) of the graph `graph` names (one of `GRAPHS`), arrays of the caller's
        own (never a buffer the runtime writes again)."""
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
            (low_rank, mask): ort.InferenceSession(
                export_low_res_decoder(model, low_rank, mask_prompt=mask, token_input=True),
                options,
                providers=["CPUExecutionProvider"],
            )
            for low_rank, mask in GRAPHS
        }

    def _run(self, graph: tuple[bool, bool], feeds: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        scores, low_res = self._sessions[graph].run(None, feeds)  # new arrays on every run
        return scores, low_res


def decoder_feeds(
    tokens: np.ndarray, coords: np.ndarray, labels: np.ndarray, mask_input: np.ndarray | None
) -> dict[str, Any]:
    """The inputs of a runtime's graph for one prompt (`graph_inputs(mask_input is not None, token_input=True)`),
    each C-contiguous float32 (a runtime may read them in place): `tokens` (1 x N x C, `ImageTokens`), `coords`
    (N x 2), `labels` (N)."""
    feeds = {
        TOKENS: np.ascontiguousarray(tokens, dtype=np.float32),
        "point_coords": np.ascontiguousarray(coords, dtype=np.float32)[None],
        "point_labels": np.ascontiguousarray(labels, dtype=np.float32)[None],
    }
    if mask_input is not None:
        feeds["mask_input"] = np.ascontiguousarray(mask_input, dtype=np.float32)[None]
    return feeds


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
