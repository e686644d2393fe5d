"""The `openvino` engine (CPU): SAM's ViT encoder converted from the loaded checkpoint to OpenVINO.

- `float32`: the converted model as it is (the same function as upstream, oneDNN's fused kernels);
- `int8`: post-training static quantization with NNCF (`ModelType.TRANSFORMER`: SmoothQuant, then int8 MatMuls,
  7-bit weights where the CPU has no VNNI; the convolutions stay float32), calibrated on generated photo-like
  scenes (`calibration.py`), so no image of the user's is needed and the result is deterministic for one
  checkpoint.

Converting ViT-B takes one to two minutes on 2 cores and quantizing a few more, so the prepared model is kept as
OpenVINO IR (`.xml` + `.bin`) in `cache_dir`, keyed by the checkpoint file (path, size, mtime) and the versions of
openvino and nncf: a restart or a wake from zero reads it back in seconds. Like `Sam.image_encoder` it takes SAM's
normalised, padded NCHW float32 batch (any batch size, run image by image) and returns float32 (B, 256, 64, 64).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from segment_anything.modeling.image_encoder import ImageEncoderViT

from .calibration import calibration_batches
from .plan import EnginePlan, cpu_features

log = logging.getLogger(__name__)

CALIBRATION_IMAGES = 12
# Bumped when what `prepare_model` makes changes (shapes, quantization settings): an older cached IR is not reused.
IR_FORMAT = "3"
# The traced names of upstream's `(q * scale) @ k.transpose(-2, -1)` and `attn @ v` (not the Linear layers, whose
# names end in aten::linear/MatMul).
ATTENTION_MATMULS = r".*\.attn/aten::matmul/MatMul.*"
INPUT_SIZE = 1024
SMOOTH_QUANT_ALPHA = 0.5
IR_FOLDER = "openvino"  # beside the checkpoint


def ir_precision(precision: str) -> str:
    """The precision of the IR a plan's precision computes from: bfloat16 is the float32 IR compiled with the
    plugin's bf16 hint (the same file; only int8 is a model of its own)."""
    return "int8" if precision == "int8" else "float32"


def ir_cache_key(checkpoint: Path, variant: str, precision: str) -> str:
    """What the prepared IR depends on: the checkpoint file as it is on disk, the variant, the IR's precision
    (`ir_precision`) and the converter's and quantizer's versions (a new openvino or nncf prepares it again)."""
    import nncf
    import openvino

    precision = ir_precision(precision)
    stat = checkpoint.stat()
    parts = [IR_FORMAT, str(checkpoint.resolve()), str(stat.st_size), str(stat.st_mtime_ns), variant, precision]
    parts += [openvino.__version__, nncf.__version__]
    if precision == "int8" and cpu_features().int8_saturates:
        parts.append("7-bit weights")  # quantize's overflow fix: this CPU's IR is not a VNNI CPU's
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:20]


def prepared_ir(checkpoint: Path, variant: str, precision: str) -> Path:
    """Where the prepared IR (`.xml`, its weights in the `.bin` beside) of a checkpoint file is kept: the folder
    `openvino/` beside the checkpoint (the pod's model cache, a PVC when the SamModel has one)."""
    return checkpoint.parent / IR_FOLDER / f"sam-encoder-{ir_cache_key(checkpoint, variant, precision)}.xml"


def is_prepared(checkpoint: Path, variant: str, precision: str) -> bool:
    """Whether `prepared_ir` holds a whole IR for this checkpoint file (`engine: auto` runs openvino then)."""
    if not checkpoint.is_file() or not (checkpoint.parent / IR_FOLDER).is_dir():
        return False  # (before the key, whose versions import openvino and nncf: nothing to load for fused)
    xml = prepared_ir(checkpoint, variant, precision)
    return xml.exists() and xml.with_suffix(".bin").exists()


def convert(encoder: ImageEncoderViT) -> Any:
    """The encoder as an OpenVINO model for one 1024x1024 image (static shapes: OpenVINO materialises each global
    block's attention, so a batch of B costs B times the memory, ~2 GB per image for ViT-B, and ran slower per
    image than B single calls; `OpenVinoEncoder` runs a batch image by image)."""
    import openvino

    example = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
    # Tracing warns at every shape-dependent Python branch of upstream's ViT (padding, rel-pos sizes): all inputs
    # are 1024x1024, so those branches are constants by design.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit._trace.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace_method's deprecation, inside openvino
        return openvino.convert_model(
            encoder.eval(), example_input=example, input=[openvino.PartialShape([1, 3, INPUT_SIZE, INPUT_SIZE])]
        )


def quantize(model: Any, inputs: list[np.ndarray]) -> Any:
    """NNCF's post-training int8 quantization of a transformer, calibrated on `inputs` (NCHW batches of one).

    The settings are the ones that held the fidelity tests' bounds (IoU >= 0.98 on the tiny model and on random
    ViT-B, whose random weights make masks sensitive) and ran fastest (bench_engine, ViT-B): the MIXED preset
    (asymmetric activations); SmoothQuant at alpha 0.5; the patch embedding and the neck (the only convolutions)
    and attention's two activation-by-activation products (q·k, attn·v) kept in float32, which was also faster
    than int8 there; the Linear layers (qkv, proj, MLP: nearly all the FLOPs) in int8; 12 calibration scenes (4
    gave IoU 0.967).

    Where the CPU has no VNNI its int8 products saturate (int16 sums of pairs, as in `int8.py`): there every
    weight takes 7 bits (NNCF's `OverflowFix.ENABLE`; its default fixes the first layer only): on an AVX2-only AMD
    EPYC the tiny model's cosine on three scenes went from 0.9870-0.9882 to 0.99986-0.99993 (random ViT-B: cosine
    held, masks IoU 0.978, so `auto` does not pick int8 there, `plan.py`).
    """
    import nncf
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
        OverflowFix,
    )

    # SmoothQuant's alpha for MatMuls: NNCF's transformer default (0.95) moves nearly all of an activation's
    # outliers into the weights; 0.5 splits them evenly. On random ViT-B (scene 7): cosine 0.99984 -> 0.99989
    # and the worst of five clicks' IoU 0.977 -> 0.983, at the same speed (bench/README).
    smoothing = AdvancedSmoothQuantParameters(matmul=SMOOTH_QUANT_ALPHA)
    nncf.set_log_level(logging.ERROR)  # its per-layer tables and progress bars (rich, on stdout) are not a pod's log
    with contextlib.redirect_stdout(io.StringIO()):
        return nncf.quantize(
            model,
            nncf.Dataset(inputs),
            model_type=nncf.ModelType.TRANSFORMER,
            preset=nncf.QuantizationPreset.MIXED,
            ignored_scope=nncf.IgnoredScope(types=["Convolution"], patterns=[ATTENTION_MATMULS], validate=False),
            subset_size=len(inputs),
            advanced_parameters=AdvancedQuantizationParameters(
                smooth_quant_alphas=smoothing,
                overflow_fix=OverflowFix.ENABLE if cpu_features().int8_saturates else None,
            ),
        )


def prepare_model(encoder: ImageEncoderViT, precision: str, preprocess: Any, cached: Path | None) -> tuple[Any, bool]:
    """The OpenVINO model for `precision`, read from `cached` (an IR path, see `prepared_ir`) when it holds one,
    else prepared (and stored there), and whether it is read from a file: then it shares no memory with `encoder`
    (`convert_model` shares the PyTorch weights), which may be dropped."""
    import openvino

    core = openvino.Core()
    if cached is not None and cached.exists() and cached.with_suffix(".bin").exists():
        log.info("OpenVINO encoder read from %s", cached)
        return core.read_model(cached), True
    started = time.monotonic()
    model = convert(encoder)
    if precision == "int8":
        model = quantize(model, calibration_batches(preprocess, CALIBRATION_IMAGES))
    log.info("OpenVINO encoder (%s) prepared in %.1f s", precision, time.monotonic() - started)
    if cached is not None and _store(model, cached):
        return core.read_model(cached), True  # what the next start reads, and nothing shared with PyTorch
    return model, False


def _store(model: Any, target: Path) -> bool:
    """Writes the IR beside its final name and renames it into place, so a reader never sees half of it."""
    import openvino

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".ir-") as scratch:
            staged = Path(scratch) / target.name
            openvino.save_model(model, staged, compress_to_fp16=False)
            staged.with_suffix(".bin").replace(target.with_suffix(".bin"))
            staged.replace(target)
        log.info("OpenVINO encoder stored in %s", target)
        return True
    except OSError as exc:  # a read-only cache costs the next start the preparation, nothing else
        log.warning("OpenVINO encoder not cached in %s: %s", target.parent, exc)
        return False


class OpenVinoEncoder:
    """A compiled OpenVINO encoder: float32 NCHW batch in, float32 (B, 256, 64, 64) out."""

    def __init__(self, model: Any, plan: EnginePlan, threads: int, standalone: bool = False) -> None:
        import openvino

        # f32 for what is not int8, unless the plan says bfloat16: on a CPU with AVX512_BF16 or AMX the plugin
        # would otherwise compute those layers (all of them for float32) in bf16 (differences ~1e-2: not the
        # float32 function the plan names). bfloat16 asks for exactly that (ViT-B on AMX: 1.67 s an image against
        # 4.63 s in f32, cosine 0.99994; bench/README).
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": max(1, threads),
            "INFERENCE_PRECISION_HINT": "bf16" if plan.precision == "bfloat16" else "f32",
        }
        self.plan = plan
        self.standalone = standalone  # holds its own weights: the PyTorch encoder it came from may go
        self._compiled = openvino.Core().compile_model(model, "CPU", config)
        self._request = self._compiled.create_infer_request()

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        batch = images.detach().to("cpu", torch.float32).contiguous().numpy()
        outputs = []
        for index in range(batch.shape[0]):  # one image per call (see `convert`)
            self._request.infer({0: batch[index : index + 1]})
            outputs.append(np.array(self._request.get_output_tensor(0).data, dtype=np.float32, copy=True))
        return torch.from_numpy(np.concatenate(outputs))


def build_openvino_encoder(
    encoder: ImageEncoderViT,
    plan: EnginePlan,
    preprocess: Any,
    cached: Path | None = None,
) -> OpenVinoEncoder:
    """`plan` is openvino/float32, openvino/bfloat16 or openvino/int8 on the CPU; `preprocess` maps an HxWx3 uint8
    image to the encoder's input (the predictor's own resize + `Sam.preprocess`, so calibration sees what serving sees);
    `cached`: where the prepared IR is read from or stored (None: prepared every time)."""
    model, standalone = prepare_model(encoder, plan.precision, preprocess, cached)
    return OpenVinoEncoder(model, plan, torch.get_num_threads(), standalone)


class ReleasedImageEncoder(torch.nn.Module):
    """Stands in for `Sam.image_encoder` once an OpenVINO encoder holds its own weights: `Sam.preprocess` and the
    prompt encoder's export read `img_size`; the weights (~360 MB for ViT-B, 2.5 GB for ViT-H) are freed."""

    def __init__(self, img_size: int) -> None:
        super().__init__()
        self.img_size = img_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("the PyTorch image encoder was released: the OpenVINO encoder computes embeddings")
