"""GPU benchmark in one short command: the service's encoder (engine/precision `auto`) vs the reference handler's
(torch/float32, one image at a time), same GPU, same random-weight models, same generated scene.

Per variant (ViT-H and ViT-B by default) it reports img/s and p50 latency per forward at batch 1/8/32, peak
GPU memory, the reference's img/s at batch 1 and the ratio, and a fidelity check (cosine and max |diff| of
the fast embedding against the float32 one, per image). Prints a markdown table and writes JSON (`--json`).

On the device machine (torch is there; segment_anything, pydantic and this repo's package are not installed,
so `bench/gpu_run.sh` puts the repo's inference/ and the carried `.device-site/` on PYTHONPATH):
    bash bench/gpu_run.sh                      # ViT-H + ViT-B, batch 1/8/32, a few minutes
Tested here on the CPU with:
    .venv/bin/python bench/gpu_bench.py --device cpu --variants vit_tiny --batches 1,2 --iters 2 --ref-iters 1
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_engine import scene_input
from sam_inference.torch_models.engine.encoder import build_encoder
from sam_inference.torch_models.engine.plan import derive_plan, resolve_plan
from sam_inference.torch_models.tiny import build_random_sam


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(encoder: Any, x: torch.Tensor, iters: int, warmup: int, device: str) -> tuple[list[float], int]:
    """Seconds per forward (after `warmup` untimed ones) and the peak memory of the timed ones (bytes)."""
    with torch.inference_mode():
        for _ in range(warmup):
            encoder(x)
        sync(device)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        seconds = []
        for _ in range(iters):
            started = time.perf_counter()
            encoder(x).float()
            sync(device)
            seconds.append(time.perf_counter() - started)
    peak = int(torch.cuda.max_memory_allocated()) if device == "cuda" else 0
    return seconds, peak


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def bench_variant(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    device = args.device
    sam = build_random_sam(variant).to(device)
    x1 = scene_input(sam, 3, device)
    reference = build_encoder(copy.deepcopy(sam.image_encoder), derive_plan("torch", "float32", device, "float32"))
    fast: Any = build_encoder(sam.image_encoder, resolve_plan(args.engine, args.precision, device))
    plan = fast.plan.describe()
    if args.compile:
        fast = torch.compile(fast, mode="max-autotune-no-cudagraphs", dynamic=False)
    with torch.inference_mode():
        want = reference(x1).float().cpu().numpy()
        got = fast(x1).float().cpu().numpy()
    ref_s, ref_peak = timed(reference, x1, args.ref_iters, 1, device)
    del reference
    if device == "cuda":
        torch.cuda.empty_cache()
    result: dict[str, Any] = {
        "variant": variant,
        "plan": plan + (" + torch.compile" if args.compile else ""),
        "cosine": cosine(got, want),
        "max_abs_diff": float(np.abs(got - want).max()),
        "reference": {"img_s": 1 / statistics.median(ref_s), "p50_s": statistics.median(ref_s), "peak_bytes": ref_peak},
        "batches": [],
    }
    for batch in args.batches:
        xb = x1.expand(batch, -1, -1, -1).contiguous()
        seconds, peak = timed(fast, xb, args.iters, args.warmup, device)
        p50 = statistics.median(seconds)
        result["batches"].append({"batch": batch, "img_s": batch / p50, "p50_s": p50, "peak_bytes": peak})
    del sam, fast
    if device == "cuda":
        torch.cuda.empty_cache()
    return result


def table(results: list[dict[str, Any]], device_name: str) -> str:
    lines = [
        f"device: {device_name}",
        "| model | path | batch | img/s | p50 ms / forward | peak GPU MiB | x reference | cosine | max abs diff |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ref = r["reference"]
        lines.append(
            f"| {r['variant']} | reference torch/float32 | 1 | {ref['img_s']:.2f} | {ref['p50_s'] * 1000:.1f} | "
            f"{ref['peak_bytes'] / 2**20:.0f} | x1.00 | 1 | 0 |"
        )
        for b in r["batches"]:
            lines.append(
                f"| {r['variant']} | {r['plan']} | {b['batch']} | {b['img_s']:.2f} | {b['p50_s'] * 1000:.1f} | "
                f"{b['peak_bytes'] / 2**20:.0f} | x{b['img_s'] / ref['img_s']:.2f} | {r['cosine']:.6f} | "
                f"{r['max_abs_diff']:.2e} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--variants", type=lambda s: s.split(","), default=["vit_h", "vit_b"])
    parser.add_argument("--batches", type=lambda s: [int(v) for v in s.split(",")], default=[1, 8, 32])
    parser.add_argument("--engine", default="auto", choices=["auto", "torch", "fused"])
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16", "float16", "int8"])
    parser.add_argument("--iters", type=int, default=5, help="timed forwards per batch size")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--ref-iters", type=int, default=3, help="timed reference forwards (batch 1)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the fast encoder (slow first call)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no GPU")
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    results = []
    for variant in args.variants:
        started = time.perf_counter()
        results.append(bench_variant(variant, args))
        print(f"{variant} done in {time.perf_counter() - started:.0f} s", flush=True)
    report = table(results, device_name)
    print(report)
    fidelity_ok = all(r["cosine"] >= (0.999 if args.device == "cuda" else 0.99) for r in results)
    print(f"fidelity: {'PASS' if fidelity_ok else 'FAIL'} (cosine >= {0.999 if args.device == 'cuda' else 0.99})")
    if args.json:
        args.json.write_text(json.dumps({"device": device_name, "results": results}, indent=2))
    if not fidelity_ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
