"""Benchmark: the encoder engines side by side, in one process, interleaved round by round.

Each path is `sam_inference.torch_models.engine.build_encoder` for one (engine, precision), on its own copy of one
random-weight model (rel-pos tables randomised). Every round runs every path once on the same generated
scene, so machine noise hits all alike. Reports the best and median seconds per image, the speed-up over the
reference (torch/float32, what CVAT's handler runs), and cosine and max |diff| against it; `--profile PATH`
adds torch.profiler's top operators for one path (where the time goes).

    .venv/bin/python bench/bench_engine.py --variant vit_b --rounds 3
    .venv/bin/python bench/bench_engine.py --variant vit_b --paths torch/float32,fused/int8 --profile fused/int8
    .venv/bin/python bench/bench_engine.py --variant vit_b --paths fused/int8,openvino/float32,openvino/int8
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from sam_inference.torch_models.engine.encoder import build_encoder  # noqa: E402
from sam_inference.torch_models.engine.openvino_encoder import build_openvino_encoder  # noqa: E402
from sam_inference.torch_models.engine.plan import EnginePlan, derive_plan, resolve_plan  # noqa: E402
from sam_inference.torch_models.tiny import build_random_sam  # noqa: E402
from segment_anything.modeling import Sam  # noqa: E402
from segment_anything.utils.transforms import ResizeLongestSide  # noqa: E402
from unit.inference.scenes import make_scene  # noqa: E402

REFERENCE = "torch/float32"


def image_input(sam: Sam, image: np.ndarray, device: str) -> torch.Tensor:
    """SamPredictor.set_image's tensor for an HxWx3 uint8 image (resize, NCHW, normalise, pad)."""
    resized = ResizeLongestSide(1024).apply_image(image)
    return sam.preprocess(torch.as_tensor(resized).permute(2, 0, 1).contiguous()[None].to(device))


def scene_input(sam: Sam, seed: int, device: str, batch: int = 1) -> torch.Tensor:
    return torch.cat([image_input(sam, make_scene(seed, 1280, 720).image, device)] * batch)


def plan_for(path: str, device: str) -> EnginePlan:
    engine, _, precision = path.partition("/")
    if engine == "auto" or precision == "auto":
        return resolve_plan(engine, precision, device)  # type: ignore[arg-type]
    return derive_plan(engine, precision, device, "float32")  # type: ignore[arg-type]


def prepare(sam: Sam, plan: EnginePlan, device: str) -> Any:
    """The encoder `plan` runs; openvino paths are converted (and quantized) here, their time printed."""
    if plan.engine != "openvino":
        return build_encoder(copy.deepcopy(sam.image_encoder), plan)

    def encoder_input(image: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return np.asarray(image_input(sam, image, device).cpu().numpy(), dtype=np.float32)

    started = time.perf_counter()
    encoder = build_openvino_encoder(copy.deepcopy(sam.image_encoder), plan, encoder_input)
    print(
        f"{plan.describe()}: converted{' and quantized' * (plan.precision == 'int8')} in "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )
    return encoder


def profile(encoder: Any, x: torch.Tensor, top: int) -> str:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch.inference_mode(), torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        encoder(x)
    return str(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="vit_b", choices=["vit_tiny", "vit_b", "vit_l", "vit_h"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--paths", default="torch/float32,fused/float32,torch/int8,fused/int8,auto/auto")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--profile", default=None, help="a path to profile once after the rounds")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    paths = args.paths.split(",")
    if REFERENCE not in paths:
        paths.insert(0, REFERENCE)
    sam = build_random_sam(args.variant)
    x = scene_input(sam, 1, args.device)
    encoders = {p: prepare(sam, plan_for(p, args.device), args.device) for p in paths}
    del sam
    times: dict[str, list[float]] = {p: [] for p in paths}
    outputs: dict[str, np.ndarray] = {}
    print(f"{args.variant} on {args.device}, {torch.get_num_threads()} threads, {args.rounds} rounds", flush=True)
    with torch.inference_mode():
        for name, encoder in encoders.items():  # warm-up (first-call allocations, lazy packing)
            outputs[name] = encoder(x).float().cpu().numpy()
        for _ in range(args.rounds):
            for name, encoder in encoders.items():
                started = time.perf_counter()
                encoder(x).float().cpu()
                if args.device == "cuda":
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - started)
    reference = outputs[REFERENCE].ravel().astype(np.float64)
    base = min(times[REFERENCE])
    print(f"\n| path | plan | best s | median s | speed vs {REFERENCE} | cosine | max abs diff |")
    print("|---|---|---|---|---|---|---|")
    for name in paths:
        out = outputs[name].ravel().astype(np.float64)
        cosine = float(out @ reference / (np.linalg.norm(out) * np.linalg.norm(reference)))
        best, median = min(times[name]), statistics.median(times[name])
        print(
            f"| {name} | {encoders[name].plan.describe()} | {best:.2f} | {median:.2f} | x{base / best:.2f} | "
            f"{cosine:.6f} | {np.abs(out - reference).max():.2e} |"
        )
    if args.profile:
        print(f"\nprofile of {args.profile}:\n{profile(encoders[args.profile], x, args.top)}")


if __name__ == "__main__":
    main()
