"""SAM's prompt encoder + mask decoder in onnxruntime, for masks mode on the CPU.

The decoder is exported from the loaded model at start-up (in memory, a few seconds) as
`lean_mask_decoder.LeanLowResDecoder`: upstream's `SamOnnxModel` without its upsampling, rewritten for fewer
FLOPs (cross attention in low-rank form, channel-last upscaling). It returns the best mask's 256x256 logits and
its predicted IoU; `mask_upsampling` makes the frame's mask. Two graphs are exported, with and without the
low-rank attention, and each call runs the one with fewer FLOPs for its number of points; each in two forms, with
and without a mask input (a first click runs no mask downscaling). The embedding is laid out once per frame
(`ImageInputs`): as image tokens, and, for the low-rank first-click graph (`FirstClickDecoder`), as what that
graph's first block would compute from the tokens alone.

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
import onnxruntime as ort
import torch
from segment_anything.modeling import Sam
from torch import Tensor

from .export import DEFAULT_OPSET, dummy_inputs
from .lean_mask_decoder import (
    EXACT,
    FirstClickDecoder,
    GraphForm,
    LeanLowResDecoder,
    as_tokens,
    low_rank_max_points,
)

INPUTS = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input")
#: The graphs a runtime decoder holds: (low-rank attention, a mask input given).
GRAPHS = tuple(itertools.product((True, False), (True, False)))
#: The runtimes' graphs read the embedding as image tokens (`LeanLowResDecoder.token_input`), under this name.
TOKENS = "image_tokens"
#: The graph that reads `FirstClickDecoder`'s prepared inputs, under these names: low-rank, no mask input.
FIRST_CLICK = (True, False)
PREPARED = ("image_keys", "image_operand", "image_positioned")
#: Embeddings a decoder keeps laid out (12 MiB each: `ImageInputs`): the frames being annotated now.
KEPT_EMBEDDINGS = 4

T = TypeVar("T")


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
    module = LeanLowResDecoder(model, low_rank, form, mask_prompt, token_input)
    return _onnx_bytes(module, example, graph_inputs(mask_prompt, token_input), opset)


def export_first_click_decoder(model: Sam, form: GraphForm = EXACT, opset: int = DEFAULT_OPSET) -> bytes:
    """The ONNX bytes of `FirstClickDecoder(model, form)`: inputs `PREPARED` (bfloat16 where `form` makes them
    so), then the points (their number dynamic)."""
    module = FirstClickDecoder(model, form).cpu().eval()
    example = dummy_inputs()
    example.update(zip(PREPARED, module.prepare(as_tokens(example["image_embeddings"]).contiguous()), strict=True))
    return _onnx_bytes(module, example, (*PREPARED, "point_coords", "point_labels"), opset)


def export_graph(model: Sam, graph: tuple[bool, bool], form: GraphForm = EXACT) -> bytes:
    """The ONNX bytes of one of `GRAPHS` as a runtime decoder runs it: `FIRST_CLICK` reads prepared inputs, the
    others image tokens."""
    if graph == FIRST_CLICK:
        return export_first_click_decoder(model, form)
    low_rank, mask = graph
    return export_low_res_decoder(model, low_rank, form=form, mask_prompt=mask, token_input=True)


def _onnx_bytes(module: LeanLowResDecoder, example: dict[str, Tensor], inputs: tuple[str, ...], opset: int) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's tracer and deprecation warnings
        torch.onnx.export(
            module.cpu().eval(),
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


def tokens_of(embedding: np.ndarray) -> np.ndarray:
    """An embedding (1, C, 64, 64) as its image tokens (1, N, C), C-contiguous float32 (`as_tokens`)."""
    source = torch.from_numpy(np.ascontiguousarray(embedding, dtype=np.float32))
    # torch's blocked transpose: numpy's is slower
    return as_tokens(source).contiguous().numpy()  # type: ignore[no-any-return]


class EmbeddingLayouts(Generic[T]):
    """What `lay_out` makes of each of the last `kept` embeddings decoded against (their image tokens, `tokens_of`,
    or a decoder's `ImageInputs`): every click on a frame after the first reads it instead of laying the embedding
    out again (a 4 MiB transpose, ~0.9 ms in OpenVINO's graph here). Keyed by the array itself, held weakly (an id
    is trusted only while its array lives, and an embedding the service's cache drops takes its layout with it at
    the next new embedding): an embedding is never written once made (the service's cache entries are not). Safe
    across threads."""

    def __init__(self, lay_out: Callable[[np.ndarray], T], kept: int = KEPT_EMBEDDINGS) -> None:
        self._lay_out = lay_out
        self._kept = kept
        self._entries: OrderedDict[int, tuple[weakref.ref[np.ndarray], T]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, embedding: np.ndarray) -> T:
        with self._lock:
            entry = self._entries.get(id(embedding))
            if entry is not None and entry[0]() is embedding:
                self._entries.move_to_end(id(embedding))
                return entry[1]
        laid_out = self._lay_out(embedding)
        with self._lock:
            for key in [key for key, (ref, _) in self._entries.items() if ref() is None]:
                del self._entries[key]  # embeddings gone: their layouts are never asked for again
            self._entries[id(embedding)] = (weakref.ref(embedding), laid_out)
            self._entries.move_to_end(id(embedding))
            while len(self._entries) > self._kept:
                self._entries.popitem(last=False)
        return laid_out

    def __len__(self) -> int:
        """The embeddings whose layouts are kept now (a dead one's until the next new embedding)."""
        with self._lock:
            return len(self._entries)


@dataclass(frozen=True)
class ImageInputs:
    """An embedding as a decoder's graphs read it: its image tokens (`TOKENS`, the graphs other than
    `FIRST_CLICK`) and `FIRST_CLICK`'s `PREPARED` inputs, as the runtime takes them."""

    tokens: np.ndarray
    first_click: dict[str, Any]


class LowResDecoder:
    """Decodes prompts (already in the 1024-pixel input frame) against an embedding with one of four exported graphs
    (`GRAPHS`: with and without the low-rank attention, with and without a mask input; `export_graph` in `form`);
    a runtime supplies `_run`, and `_runtime_input` where its graphs read bfloat16."""

    def __init__(self, model: Sam, form: GraphForm = EXACT) -> None:
        self._low_rank_max_points = low_rank_max_points(model)
        self._first_click = FirstClickDecoder(model, form).cpu().eval()
        self._inputs = EmbeddingLayouts(self._lay_out)

    def __call__(
        self,
        embedding: np.ndarray,
        coords: np.ndarray,
        labels: np.ndarray,
        mask_input: np.ndarray | None,
    ) -> tuple[float, np.ndarray]:
        """(predicted IoU, low-res logits [1,256,256]) of the selected mask; `coords` (N x 2), `labels` (N)."""
        graph = (len(coords) <= self._low_rank_max_points, mask_input is not None)
        inputs = self._inputs(embedding)
        if graph == FIRST_CLICK:
            feeds = {**inputs.first_click, **point_feeds(coords, labels)}
        else:
            feeds = decoder_feeds(inputs.tokens, coords, labels, mask_input)
        score, low_res = self._run(graph, feeds)
        return float(score[0, 0]), low_res[0]

    def _lay_out(self, embedding: np.ndarray) -> ImageInputs:
        tokens = tokens_of(embedding)
        prepared = self._first_click.prepare(torch.from_numpy(tokens))
        first_click = {name: self._runtime_input(value) for name, value in zip(PREPARED, prepared, strict=True)}
        return ImageInputs(tokens, first_click)

    def _runtime_input(self, value: Tensor) -> Any:
        """`value` as this runtime's graphs take it (here: a float32 array, sharing `value`'s memory)."""
        if value.dtype != torch.float32:
            raise TypeError(f"this runtime takes float32 inputs, not {value.dtype}")
        return value.contiguous().numpy()

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
            graph: ort.InferenceSession(export_graph(model, graph), options, providers=["CPUExecutionProvider"])
            for graph in GRAPHS
        }

    def _run(self, graph: tuple[bool, bool], feeds: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        scores, low_res = self._sessions[graph].run(None, feeds)  # new arrays on every run
        return scores, low_res


def decoder_feeds(
    tokens: np.ndarray, coords: np.ndarray, labels: np.ndarray, mask_input: np.ndarray | None
) -> dict[str, Any]:
    """The inputs of a runtime's graph for one prompt (`graph_inputs(mask_input is not None, token_input=True)`),
    each C-contiguous float32 (a runtime may read them in place): `tokens` (1 x N x C, `tokens_of`), `coords`
    (N x 2), `labels` (N)."""
    feeds = {TOKENS: np.ascontiguousarray(tokens, dtype=np.float32), **point_feeds(coords, labels)}
    if mask_input is not None:
        feeds["mask_input"] = np.ascontiguousarray(mask_input, dtype=np.float32)[None]
    return feeds


def point_feeds(coords: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """A prompt's points as every graph takes them, C-contiguous float32: `coords` (N x 2), `labels` (N)."""
    return {
        "point_coords": np.ascontiguousarray(coords, dtype=np.float32)[None],
        "point_labels": np.ascontiguousarray(labels, dtype=np.float32)[None],
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
