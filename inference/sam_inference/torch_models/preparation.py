"""`sam-inference prepare-encoder`: a checkpoint's OpenVINO IR prepared before the encoder starts.

The operator runs it as the `prepare-encoder` init container of a CPU SamModel that leaves the engine and the
precision to `auto` and keeps its model cache on a PersistentVolumeClaim: the first pod prepares the IR there
(minutes for ViT-B), and every later start, wake from zero or new replica reads it back in seconds. The
encoder's `auto` then resolves to `openvino` (`plan.derive_plan`); where nothing was prepared it stays `fused`.

Preparing holds the PyTorch model, its traced copy and NNCF's calibration statistics at once: more memory than
serving. Where the container's memory limit is below what the variant was measured to need, nothing is prepared
(the init container says so and succeeds; the encoder runs `fused`), rather than being OOM-killed in a loop
that would keep the pod from ever starting.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .engine.openvino_encoder import is_prepared, prepared_ir
from .engine.plan import resolve_plan
from .sam_predictor import SamEncoderPredictor

GIB = 1024**3
#: The least memory limit preparing each variant's int8 IR was seen to fit in: peak RSS measured here (ViT-B
#: 5.7 GB, bench/README; vit_tiny 1.45 GB, mostly the libraries) plus headroom. ViT-L and ViT-H were never
#: measured, so they are not prepared: their `auto` stays `fused`.
PREPARE_MEMORY_BYTES = {"vit_tiny": 2 * GIB, "vit_b": int(6.5 * GIB)}


@dataclass(frozen=True)
class Preparation:
    """What `prepare_encoder` did: `prepared` (an IR is now there), `path` (the IR) and why, in words."""

    prepared: bool
    message: str
    path: Path | None = None


def memory_limit_bytes(cgroup: Path = Path("/sys/fs/cgroup"), meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """This container's memory limit (cgroup v2 `memory.max`, or v1 `memory.limit_in_bytes`), else the machine's
    total memory; None where neither can be read."""
    for name in ("memory.max", "memory/memory.limit_in_bytes"):
        try:
            text = (cgroup / name).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # v1 writes "no limit" as a huge number, v2 as "max"
            return int(text)
        break
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def skip_reason(variant: str, limit: int | None) -> str | None:
    """Why `variant` is not prepared under a memory limit of `limit` bytes, or None when it is."""
    need = PREPARE_MEMORY_BYTES.get(variant)
    if need is None:
        return f"preparing {variant} was never measured here (only {', '.join(PREPARE_MEMORY_BYTES)})"
    if limit is not None and limit < need:
        return f"preparing {variant} needs about {need / GIB:.1f} GiB, the memory limit is {limit / GIB:.1f} GiB"
    return None


def prepare_encoder(checkpoint: Path, variant: str, limit: int | None) -> Preparation:
    """Prepare (and store beside `checkpoint`) the OpenVINO IR that the encoder's `auto` engine would read, in
    the precision `auto` resolves to on this CPU (bfloat16, on AMX, reads the float32 IR: converted, not
    quantized). Nothing is done where it is already there or where `skip_reason` says no."""
    plan = resolve_plan("auto", "auto", "cpu")
    target = prepared_ir(checkpoint, variant, plan.precision)
    if is_prepared(checkpoint, variant, plan.precision):
        return Preparation(True, f"up to date: {target}", target)
    reason = skip_reason(variant, limit)
    if reason is not None:
        return Preparation(False, f"not prepared ({reason}): the encoder runs fused/{plan.precision}")
    predictor = SamEncoderPredictor(
        variant, checkpoint, device="cpu", precision=plan.precision, engine="openvino", mask_decoder="torch"
    )
    predictor.load()  # converts (int8: quantizes) and stores the IR (openvino_encoder.prepare_model)
    if not is_prepared(checkpoint, variant, plan.precision):
        return Preparation(False, f"prepared but not stored in {target.parent} (read-only?): the encoder runs fused")
    return Preparation(True, f"wrote {target}", target)
