"""Benchmark: SAM 2.1 against SAM 1 in the service's own predictors, random weights, one process, interleaved.

For each model (default: Hiera-T and ViT-B) it measures, round by round so machine noise hits all alike:
- **encoder**: seconds per image (`preprocess` + `embed_batch` of one 1080p frame), what a cache miss costs;
- **decoder per click**: `decode_masks` of a CVAT interaction on that frame (each call every click so far,
  fed the previous click's low-res mask, as masks mode does with prompt-prefix refinement);
- **memory per cache entry**: `Embedding.nbytes` (everything one cached frame holds) and the 256 KiB low-res
  mask the refinement store keeps per (frame, prompt set);
- **refinement fidelity**: IoU of the service's chain against the same clicks through the upstream predictor
  (`SamPredictor` / `SAM2ImagePredictor`) fed its own previous low-res mask.

    .venv/bin/python bench/bench_sam2.py                                  # hiera_t vs vit_b, float32, 3 rounds
    .venv/bin/python bench/bench_sam2.py --models hiera_t,vit_b:auto      # ViT-B at the service's CPU default
    .venv/bin/python bench/bench_sam2.py --models hiera_micro,vit_tiny --rounds 2 --clicks 4   # quick check
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sam_inference.predictor import Embedding, Prompts
from sam_inference.torch_models.sam2_predictor import Sam2EncoderPredictor
from sam_inference.torch_models.sam_predictor import SamEncoderPredictor, use_multimask
from sam_inference.torch_models.tiny import build_random_sam, build_random_sam2

SAM2_VARIANTS = ("hiera_t", "hiera_s", "hiera_b+", "hiera_l", "hiera_micro")


@dataclass
class Model:
    label: str
    predictor: Any
    upstream: Any
    encode_s: list[float] = field(default_factory=list)
    click_s: list[float] = field(default_factory=list)
    entry_bytes: int = 0
    ious: list[float] = field(default_factory=list)


def build(spec: str) -> Model:
    variant, _, precision = spec.partition(":")
    precision = precision or "float32"
    checkpoint = Path(tempfile.gettempdir()) / "unused.pt"  # the model is passed in: nothing is read
    if variant in SAM2_VARIANTS:
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        model = build_random_sam2(variant)
        predictor: Any = Sam2EncoderPredictor(variant, checkpoint, precision=precision, model=model)
        upstream: Any = SAM2ImagePredictor(model)
    else:
        from segment_anything import SamPredictor

        sam = build_random_sam(variant)
        engine = "auto" if precision == "auto" else "torch"
        predictor = SamEncoderPredictor(variant, checkpoint, precision=precision, model=sam, engine=engine)  # type: ignore[arg-type]
        upstream = SamPredictor(sam)
    predictor.load()
    return Model(f"{variant} ({precision})", predictor, upstream)


def frame(width: int, height: int) -> np.ndarray:
    """A frame with a few flat discs (so masks have edges) over noise."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(5):
        cx, cy, r = rng.integers(0, width), rng.integers(0, height), rng.integers(height // 10, height // 4)
        image[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.integers(100, 255, size=3)
    return image


def interaction(width: int, height: int, clicks: int) -> list[Prompts]:
    """The prompts CVAT sends for one interaction: click k carries clicks 1..k (positives, then negatives)."""
    rng = np.random.default_rng(1)
    points = [(float(rng.uniform(0, width)), float(rng.uniform(0, height))) for _ in range(clicks)]
    labels = [1 if i % 3 != 1 else 0 for i in range(clicks)]
    steps = []
    for k in range(1, clicks + 1):
        order = [i for i in range(k) if labels[i] == 1] + [i for i in range(k) if labels[i] == 0]
        steps.append(Prompts(points=tuple(points[i] for i in order), labels=tuple(labels[i] for i in order)))
    return steps


def encode(model: Model, image: np.ndarray) -> Embedding:
    started = time.perf_counter()
    features = model.predictor.embed_batch([model.predictor.preprocess(image)])[0]
    model.encode_s.append(time.perf_counter() - started)
    height, width = image.shape[:2]
    return Embedding(features.image_embed, height, width, high_res=features.high_res)


def clicks(model: Model, embedding: Embedding, steps: list[Prompts]) -> list[np.ndarray]:
    masks, low_res = [], None
    for prompts in steps:
        started = time.perf_counter()
        result = model.predictor.decode_masks(embedding, prompts, low_res)
        model.click_s.append(time.perf_counter() - started)
        masks.append(result.mask)
        low_res = result.low_res
    return masks


def upstream_chain(model: Model, image: np.ndarray, steps: list[Prompts]) -> list[np.ndarray]:
    model.upstream.set_image(image)
    masks, low_res = [], None
    for prompts in steps:
        out, scores, lows = model.upstream.predict(
            point_coords=np.array(prompts.points, dtype=np.float32),
            point_labels=np.array(prompts.labels),
            mask_input=low_res,
            multimask_output=use_multimask(prompts),
        )
        best = int(np.argmax(scores))
        masks.append(out[best] > 0)
        low_res = lows[best][None]
    return masks


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int(np.logical_or(a, b).sum())
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum()) / union


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="hiera_t,vit_b", help="variant[:precision], comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clicks", type=int, default=6, help="clicks per interaction (decoder latency)")
    parser.add_argument("--size", default="1920x1080")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    image = frame(width, height)
    steps = interaction(width, height, args.clicks)
    models = [build(spec) for spec in args.models.split(",")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, frame {width}x{height}")
    for model in models:  # warm-up (first-call allocations, oneDNN primitive creation)
        embedding = encode(model, image)
        clicks(model, embedding, steps[:2])
        model.encode_s.clear()
        model.click_s.clear()
    for round_ in range(args.rounds):
        for model in models:
            embedding = encode(model, image)
            model.entry_bytes = embedding.nbytes
            ours = clicks(model, embedding, steps)
            if round_ == 0:
                model.ious = [iou(a, b) for a, b in zip(ours, upstream_chain(model, image, steps), strict=True)]
            print(f"  round {round_ + 1} {model.label}: encode {model.encode_s[-1]:.2f} s", flush=True)
    print()
    print(
        "| model | encoder s/image (min / median) | decoder ms/click (median / p95) | cache entry "
        "| refinement IoU vs upstream chain |"
    )
    print("|---|---|---|---|---|")
    for model in models:
        ms = sorted(s * 1000 for s in model.click_s)
        p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
        print(
            f"| {model.label} | {min(model.encode_s):.2f} / {statistics.median(model.encode_s):.2f} "
            f"| {statistics.median(ms):.1f} / {p95:.1f} | {model.entry_bytes / 2**20:.0f} MiB "
            f"(+ 0.25 MiB low-res per prompt set) | min {min(model.ious):.4f} over {len(model.ious)} clicks |"
        )


if __name__ == "__main__":
    main()
