"""SAM's prompt encoder + mask decoder in OpenVINO, its large products in bfloat16 where the CPU computes them.

The same graphs as the onnxruntime decoder (`onnx_decoder`: `LeanLowResDecoder` exported from the loaded model
at start-up, with and without the low-rank attention, with and without a mask input, reading the embedding laid
out once per embedding: as image tokens, and for a first click as its first block's operands, `ImageInputs`; read
by OpenVINO's ONNX frontend), in another
`lean_mask_decoder.GraphForm`: the image→tokens scores tokens-major (OpenVINO's softmax runs that layout faster)
and, where the CPU plugin reports BF16 (AVX512_BF16 or AMX), the products over the 4096 image tokens with bfloat16
operands (`bf16_products`; sums, softmax, norms and GELU stay float32, as under `torch.autocast`). Those products
are most of the decoder's FLOPs, and AMX runs them in bfloat16 only. On a 2-core AMX Xeon one click's graph
took 15.7-17.0 ms against onnxruntime's 22.1-23.8 ms; OpenVINO's own `INFERENCE_PRECISION_HINT: bf16` (every op
in bfloat16) took 12.8-13.8 ms but the tiny model's masks fell to IoU 0.55 at 256x256, so the hint stays f32
(bench/README). The masks keep IoU >= 0.98 against float32 `SamPredictor`
(tests/unit/inference/test_openvino_mask_decoder.py).

`SNIPPETS_MODE: DISABLE`: with OpenVINO's "snippets" (its own fused element-wise subgraphs) the all-bfloat16 graph
segfaulted at compile time with one thread (openvino 2026.4: the whole process, at start-up). The shipped graph
compiled with them and ran ~10 % faster (measured while another job shared the cores), but a crash of the encoder
at load is not worth that: they stay off. One infer request per graph serves every call, under a lock (a request
is not reentrant; a call already uses every thread it was given); it reads the caller's arrays in place and its
outputs are copied out before the lock is released.
"""

from __future__ import annotations

import io
import threading
from typing import Any

import numpy as np
import torch
from segment_anything.modeling import Sam
from torch import Tensor

from .lean_mask_decoder import GraphForm
from .onnx_decoder import GRAPHS, LowResDecoder, export_graph


def native_bf16(core: Any | None = None) -> bool:
    """OpenVINO's CPU plugin computes bfloat16 natively here (it lists BF16 among its capabilities)."""
    if core is None:
        import openvino as ov

        core = ov.Core()
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def compile_config(threads: int) -> dict[str, str]:
    """The CPU plugin's settings for the decoder (see the module docstring)."""
    return {
        "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
        "INFERENCE_NUM_THREADS": str(max(1, threads)),
        "SNIPPETS_MODE": "DISABLE",
    }


class OpenVinoLowResDecoder(LowResDecoder):
    """The graphs in OpenVINO (see the module docstring); `bf16`: the products in bfloat16 (default: where
    native)."""

    def __init__(self, model: Sam, threads: int, bf16: bool | None = None) -> None:
        import openvino as ov

        core = ov.Core()
        self.bf16 = native_bf16(core) if bf16 is None else bf16
        form = GraphForm(tokens_major=True, bf16_products=self.bf16)
        super().__init__(model, form)
        self._requests = {
            # read_model, not convert_model: the same graph once compiled, and 0.3 s for it instead of 2 s.
            graph: core.compile_model(
                core.read_model(io.BytesIO(export_graph(model, graph, form))), "CPU", compile_config(threads)
            ).create_infer_request()
            for graph in GRAPHS
        }
        self._lock = threading.Lock()

    def _runtime_input(self, value: Tensor) -> Any:
        """bfloat16 (the first-click graph's prepared operands in the bfloat16 form) as an OpenVINO tensor over the
        same memory (numpy has no bfloat16: its bits as uint16), float32 as an array."""
        if value.dtype != torch.bfloat16:
            return super()._runtime_input(value)
        import openvino as ov

        bits = value.contiguous().view(torch.int16).numpy().view(np.uint16)
        return ov.Tensor(bits, ov.Shape(list(bits.shape)), ov.Type.bf16)  # holds `bits`, which holds `value`

    def _run(self, graph: tuple[bool, bool], feeds: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        request = self._requests[graph]
        with self._lock:  # the outputs are the request's own buffers: copied before another call can write them
            # Shared: the request reads the caller's arrays in place (`decoder_feeds` and `_runtime_input` make them
            # C-contiguous) and returns views of its own outputs, copied here: ~1.4 ms a click less than copying both.
            outputs = request.infer(feeds, share_inputs=True, share_outputs=True)
            return np.array(outputs["iou_predictions"]), np.array(outputs["low_res_masks"])
