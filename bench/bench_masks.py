"""Benchmark: masks-mode decoding of one click on a 1080p frame, the service's `decode_masks` vs upstream
`SamPredictor.predict` (what it replaced), interleaved click by click. The prompt encoder and mask decoder are
the same size in every variant, so the tiny model's decoder measures them all.

    .venv/bin/python bench/bench_masks.py --clicks 30
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sam_inference.predictor import Embedding, Prompts
from sam_inference.torch_models.sam_predictor import SamEncoderPredictor
from sam_inference.torch_models.tiny import write_tiny_checkpoint
from segment_anything import SamPredictor
from segment_anything.utils.transforms import ResizeLongestSide


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clicks", type=int, default=30)
    parser.add_argument("--size", default="1920x1080")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    checkpoint = Path(tempfile.mkdtemp(prefix="sam-masks-")) / "tiny.pth"
    write_tiny_checkpoint(checkpoint)
    ours = SamEncoderPredictor("vit_tiny", checkpoint, device="cpu", precision="float32", engine="torch")
    ours.load()
    array = np.random.default_rng(0).standard_normal((1, 256, 64, 64)).astype(np.float32)
    embedding = Embedding(array, height, width)
    upstream = SamPredictor(ours.model)
    upstream.features = torch.as_tensor(array)
    upstream.original_size = (height, width)
    upstream.input_size = ResizeLongestSide.get_preprocess_shape(height, width, 1024)
    upstream.is_image_set = True
    rng = np.random.default_rng(1)
    times: dict[str, list[float]] = {"service decode_masks": [], "SamPredictor.predict": []}
    for i in range(args.clicks + 2):
        x, y = float(rng.uniform(0, width)), float(rng.uniform(0, height))
        started = time.perf_counter()
        ours.decode_masks(embedding, Prompts(points=((x, y),), labels=(1,)))
        mid = time.perf_counter()
        with torch.inference_mode():
            masks, scores, _ = upstream.predict(np.array([[x, y]], dtype=np.float32), np.array([1]))
            masks[int(np.argmax(scores))]
        end = time.perf_counter()
        if i >= 2:  # first calls warm the allocator
            times["service decode_masks"].append(mid - started)
            times["SamPredictor.predict"].append(end - mid)
    print(f"one click, {width}x{height} frame, {args.clicks} clicks, {torch.get_num_threads()} threads")
    print("| path | p50 ms | p95 ms |\n|---|---|---|")
    for name, values in times.items():
        p95 = sorted(values)[int(0.95 * (len(values) - 1))]
        print(f"| {name} | {statistics.median(values) * 1000:.1f} | {p95 * 1000:.1f} |")


if __name__ == "__main__":
    main()
