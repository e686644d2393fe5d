"""Benchmark: masks-mode decoding of one click on a 1080p frame, interleaved click by click:
- `decode_masks (openvino)`: the decoder in OpenVINO, its large products in bfloat16 where the CPU has it (the
  service's CPU default where it has AMX), one windowed upsampling pass;
- `decode_masks (onnxruntime)`: the decoder in onnxruntime (the CPU default elsewhere), the same upsampling;
- `decode_masks (torch)`: the service's PyTorch path (`mask_decoder="torch"`, what it ran before on the CPU);
- `SamPredictor.predict`: upstream (three masks upsampled; the best one taken).
By default the paths are interleaved click by click; with `--consecutive` each path takes every click back to back
(the service's case: one annotator clicking on one frame), the same clicks. With `--refine` each timed call is the
second click of a chain, fed its path's own low-res mask of an untimed first click (`refine.py`: what the service
decodes from an annotator's second click on), against SamPredictor fed its own.
The prompt encoder and mask decoder are the same size in every variant, so the tiny model's decoder measures
them all. With `--scene` the embedding is the tiny encoder's for a generated photo-like scene, else random.
Each path's mask is compared with SamPredictor's (IoU, minimum over the clicks). `CPU ms` is the process's
CPU time per click (all threads): what the click costs where the cores are shared with other work.

    .venv/bin/python bench/bench_masks.py --clicks 30
    .venv/bin/python bench/bench_masks.py --clicks 30 --consecutive [--refine]
    .venv/bin/python bench/bench_masks.py --clicks 30 --profile   # + cProfile of the default path
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/bench_masks.py --threads 1   # where other jobs share the cores
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from sam_inference.predictor import Embedding, Prompts
from sam_inference.torch_models.sam_predictor import SamEncoderPredictor
from sam_inference.torch_models.tiny import write_tiny_checkpoint
from segment_anything import SamPredictor
from segment_anything.utils.transforms import ResizeLongestSide

Points = tuple[tuple[float, float], ...]
Decoded = tuple[np.ndarray, np.ndarray | None]  # the frame's mask, the low-res logits fed to the next click


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clicks", type=int, default=30)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--scene", action="store_true", help="embed a generated scene instead of a random embedding")
    parser.add_argument(
        "--consecutive",
        action="store_true",
        help="each path's clicks back to back instead of interleaved click by click",
    )
    parser.add_argument(
        "--refine",
        action="store_true",
        help="time the second click of two-click chains, the first click's low-res mask fed back (untimed first)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile of the path named by --profile-path")
    parser.add_argument("--profile-path", default="decode_masks (openvino)")
    parser.add_argument("--threads", type=int, help="torch and onnxruntime threads (default: torch's, one per core)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.split("x"))
    checkpoint = Path(tempfile.mkdtemp(prefix="sam-masks-")) / "tiny.pth"
    write_tiny_checkpoint(checkpoint)
    fast = SamEncoderPredictor("vit_tiny", checkpoint, device="cpu", precision="float32", mask_decoder="onnxruntime")
    fast.load()
    openvino = SamEncoderPredictor("vit_tiny", checkpoint, model=fast.model, mask_decoder="openvino")
    openvino.load()
    eager = SamEncoderPredictor("vit_tiny", checkpoint, model=fast.model, mask_decoder="torch")
    eager.load()
    upstream = SamPredictor(fast.model)
    if args.scene:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from unit.inference.scenes import make_scene

        upstream.set_image(make_scene(5, width=width, height=height).image)
        array = upstream.get_image_embedding().numpy()
    else:
        array = np.random.default_rng(0).standard_normal((1, 256, 64, 64)).astype(np.float32)
        upstream.features = torch.as_tensor(array)
        upstream.original_size = (height, width)
        upstream.input_size = ResizeLongestSide.get_preprocess_shape(height, width, 1024)
        upstream.is_image_set = True
    embedding = Embedding(array, height, width)

    def reference(points: Points, mask_input: np.ndarray | None) -> Decoded:
        """Upstream as the service's chain runs (`refine.py`): three masks for one click, the best taken; the
        previous click's low-res mask fed back with the next."""
        with torch.inference_mode():
            masks, scores, low_res = upstream.predict(
                np.array(points, dtype=np.float32),
                np.ones(len(points), dtype=np.int64),
                mask_input=mask_input,
                multimask_output=len(points) < 2,
            )
        best = int(np.argmax(scores))
        return masks[best], low_res[best][None]

    def service(predictor: SamEncoderPredictor) -> Callable[[Points, np.ndarray | None], Decoded]:
        def decode(points: Points, mask_input: np.ndarray | None) -> Decoded:
            result = predictor.decode_masks(embedding, Prompts(points, (1,) * len(points)), mask_input)
            return result.mask, result.low_res

        return decode

    paths: dict[str, Callable[[Points, np.ndarray | None], Decoded]] = {
        "decode_masks (openvino)": service(openvino),
        "decode_masks (onnxruntime)": service(fast),
        "decode_masks (torch)": service(eager),
        "SamPredictor.predict": reference,
    }
    times: dict[str, list[float]] = {name: [] for name in paths}
    cpu: dict[str, list[float]] = {name: [] for name in paths}
    rng = np.random.default_rng(1)
    clicks = [(float(rng.uniform(0, width)), float(rng.uniform(0, height))) for _ in range(args.clicks + 2)]
    firsts = [(float(rng.uniform(0, width)), float(rng.uniform(0, height))) for _ in clicks] if args.refine else []
    # Interleaved: each click goes through every path in turn (the fairest comparison: every path sees the same
    # machine state). Consecutive: each path takes all the clicks back to back, as one annotator's clicks on one
    # frame reach the service: its embedding and its thread pool stay warm between clicks, nothing else runs.
    order = (
        [(name, i) for name in paths for i in range(len(clicks))]
        if args.consecutive
        else [(name, i) for i in range(len(clicks)) for name in paths]
    )
    masks: dict[tuple[str, int], np.ndarray] = {}
    load_before = os.getloadavg()[0]
    for name, i in order:
        points: Points = (clicks[i],)
        mask_input = None
        if args.refine:  # the chain's first click, untimed: its low-res mask goes back in with the second click
            _, mask_input = paths[name]((firsts[i],), None)
            points = (firsts[i], clicks[i])
        started, started_cpu = time.perf_counter(), time.process_time()
        mask, _ = paths[name](points, mask_input)
        elapsed, elapsed_cpu = time.perf_counter() - started, time.process_time() - started_cpu
        masks[name, i] = np.packbits(mask)  # 1/8 of the memory: every path's mask of every click is kept
        if i >= 2:  # the first calls warm the allocators
            times[name].append(elapsed)
            cpu[name].append(elapsed_cpu)
    ious = {
        name: [
            iou(np.unpackbits(masks[name, i]), np.unpackbits(masks["SamPredictor.predict", i]))
            for i in range(len(clicks))
        ]
        for name in paths
    }
    print(
        f"{'the second click of a chain' if args.refine else 'one click'}, {width}x{height} frame, "
        f"{args.clicks} clicks "
        f"{'consecutive' if args.consecutive else 'interleaved'}, "
        f"{torch.get_num_threads()} threads, "
        f"load average {load_before:.2f} before / {os.getloadavg()[0]:.2f} after"
    )
    print("| path | p50 ms | p95 ms | min ms | CPU ms p50 | min IoU vs SamPredictor |\n|---|---|---|---|---|---|")
    for name, values in times.items():
        p95 = sorted(values)[int(0.95 * (len(values) - 1))]
        print(
            f"| {name} | {statistics.median(values) * 1000:.1f} | {p95 * 1000:.1f} | {min(values) * 1000:.1f} "
            f"| {statistics.median(cpu[name]) * 1000:.1f} | {min(ious[name]):.4f} |"
        )
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.clicks):
            paths[args.profile_path](((float(rng.uniform(0, width)), float(rng.uniform(0, height))),), None)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
