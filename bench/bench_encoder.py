"""Benchmark: the sam-inference encoder service vs a CVAT-reference-like baseline, same model, same machine.

Both servers run as local processes; this script is the client. Measured in one run, so ratios compare
like with like:
- throughput and p50/p95 latency of `POST /` (CVAT contract) at 1, 4 and 16 concurrent clients, every
  request a different image (no cache help);
- latency of a repeated image (the service's cache hit vs the baseline recomputing);
- the exported CVAT-format decoder in onnxruntime: latency per click for a 1500x2250 image;
- each server's peak resident memory (VmHWM).

    .venv/bin/python bench/bench_encoder.py                      # tiny model, quick
    .venv/bin/python bench/bench_encoder.py --variant vit_b      # random-weight ViT-B (slow on a CPU)
    .venv/bin/python bench/bench_encoder.py --variant vit_b --engine torch --precision float32  # the old path
    .venv/bin/python bench/bench_encoder.py --device cuda --variant vit_h --concurrency 1,4,16,32
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np
from harness.processes import free_port
from harness.waiting import until_http_ok
from PIL import Image
from sam_inference.torch_models.engine import resolve_plan

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    server: str
    clients: int
    requests: int
    seconds: float
    latencies: list[float]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def jpeg(seed: int, width: int, height: int) -> bytes:
    rng = np.random.default_rng(seed)
    # Smooth noise compresses like a photo more than white noise does.
    small = rng.integers(0, 256, size=(height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def make_checkpoint(variant: str, directory: Path) -> Path:
    path = directory / f"sam_{variant}.pth"
    if variant == "vit_tiny":
        from sam_inference.torch_models.tiny import write_tiny_checkpoint

        write_tiny_checkpoint(path)
    else:
        import torch
        from sam_inference.torch_models.model import build_sam

        torch.manual_seed(0)
        torch.save(build_sam(variant).state_dict(), path)
    return path


def service_plan(args: argparse.Namespace, checkpoint: Path) -> str:
    """What the service runs, resolved as it resolves it: engine `auto` on the CPU takes openvino where the
    checkpoint's IR is already prepared beside it (`sam-inference prepare-encoder`)."""
    from sam_inference.torch_models.engine.openvino_encoder import is_prepared

    prepared = functools.partial(is_prepared, checkpoint, args.variant)
    return resolve_plan(args.engine, args.precision, args.device, prepared).describe()


async def load(url: str, images: list[bytes], clients: int, name: str) -> Run:
    """`clients` concurrent clients share `images`; each request posts one of them in CVAT's format."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for image in images:
        queue.put_nowait(image)
    latencies: list[float] = []
    timeout = aiohttp.ClientTimeout(total=3600)

    async def client(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            image = queue.get_nowait()
            body = json.dumps({"image": base64.b64encode(image).decode(), "pos_points": [], "neg_points": []})
            started = time.perf_counter()
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
                payload = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{name}: HTTP {response.status}: {payload[:200]!r}")
            latencies.append(time.perf_counter() - started)
            assert len(base64.b64decode(json.loads(payload)["blob"])) == 4_194_304

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        seconds = time.perf_counter() - started
    return Run(name, clients, len(images), seconds, latencies)


def decoder_latency(checkpoint: Path, variant: str, directory: Path, clicks: int) -> tuple[float, float]:
    import onnxruntime as ort
    from sam_inference.torch_models.export import export_decoder

    path = directory / "decoder.onnx"
    export_decoder(checkpoint, variant, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {
        "image_embeddings": rng.standard_normal((1, 256, 64, 64)).astype(np.float32),
        "point_coords": np.array([[[400.0, 300.0]]], dtype=np.float32),
        "point_labels": np.array([[1.0]], dtype=np.float32),
        "mask_input": np.zeros((1, 1, 256, 256), dtype=np.float32),
        "has_mask_input": np.zeros(1, dtype=np.float32),
        "orig_im_size": np.array([1500.0, 2250.0], dtype=np.float32),
    }
    session.run(None, feeds)
    times = []
    for i in range(clicks):
        feeds["point_coords"] = np.array([[[100.0 + 30 * i, 200.0 + 20 * i]]], dtype=np.float32)
        started = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - started)
    return statistics.median(times), sorted(times)[int(0.95 * (len(times) - 1))]


def peak_rss_mib(pid: int) -> float:
    """VmHWM of a live process, MiB (0 where /proc is not readable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(cmd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


async def bench(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="sam-bench-"))
    checkpoint = Path(args.checkpoint) if args.checkpoint else make_checkpoint(args.variant, work)
    ours_port, base_port = free_port(), free_port()
    env = {
        "SAM_INFERENCE_HOST": "127.0.0.1",
        "SAM_INFERENCE_PORT": str(ours_port),
        "SAM_INFERENCE_MODEL_VARIANT": args.variant,
        "SAM_INFERENCE_CHECKPOINT_PATH": str(checkpoint),
        "SAM_INFERENCE_DEVICE": args.device,
        "SAM_INFERENCE_PRECISION": args.precision,
        "SAM_INFERENCE_ENGINE": args.engine,
        "SAM_INFERENCE_MAX_BATCH_SIZE": str(args.max_batch_size),
        "SAM_INFERENCE_MAX_QUEUE": "256",
        # The baseline has no deadline; a CPU ViT-B batch of 4 takes ~100 s, past the 60 s default.
        "SAM_INFERENCE_REQUEST_TIMEOUT_S": str(args.request_timeout),
        "SAM_INFERENCE_LOG_LEVEL": "WARNING",
    }
    ours = start([sys.executable, "-m", "sam_inference", "serve"], env, work / "ours.log")
    base = start(
        [
            sys.executable,
            str(ROOT / "bench" / "baseline_server.py"),
            "--variant",
            args.variant,
            "--checkpoint",
            str(checkpoint),
            "--port",
            str(base_port),
            "--workers",
            str(args.baseline_workers),
        ],
        {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")} if args.device == "cpu" else {},
        work / "baseline.log",
    )
    try:
        await until_http_ok(f"http://127.0.0.1:{ours_port}/readyz", ours, limit_s=900)
        await until_http_ok(f"http://127.0.0.1:{base_port}/healthz", base, limit_s=900)
        urls = {"baseline": f"http://127.0.0.1:{base_port}/", "service": f"http://127.0.0.1:{ours_port}/"}
        width, height = args.image_size
        warm = [jpeg(10_000, width, height)]
        for name, url in urls.items():
            await load(url, warm, 1, name)
        runs: list[Run] = []
        seed = 0
        for clients in args.concurrency:
            total = max(args.min_requests, clients * args.requests_per_client)
            images = [jpeg(seed + i, width, height) for i in range(total)]
            seed += total
            for name, url in urls.items():  # interleaved, so machine noise hits both alike
                runs.append(await load(url, images, clients, name))
                run = runs[-1]
                print(
                    f"  {name:8s} clients={clients:<3d} {run.throughput:7.3f} img/s  p50 {run.pct(0.5):.2f} s  "
                    f"p95 {run.pct(0.95):.2f} s",
                    flush=True,
                )
        repeat = [jpeg(20_000, width, height)] * args.repeats
        hits = {name: await load(url, repeat, 1, name) for name, url in urls.items()} if args.repeats else None
        peaks = {"service": peak_rss_mib(ours.pid), "baseline": peak_rss_mib(base.pid)}
        clicks = decoder_latency(checkpoint, args.variant, work, args.clicks) if args.clicks else None
    finally:
        for process in (ours, base):
            process.terminate()
            process.wait(timeout=30)

    print(
        f"\nmodel={args.variant} device={args.device} engine={args.engine} precision={args.precision} "
        f"(service runs {service_plan(args, checkpoint)}) "
        f"max_batch={args.max_batch_size} image={width}x{height} baseline_workers={args.baseline_workers}"
    )
    print(f"{'clients':>7} {'server':>9} {'reqs':>5} {'img/s':>8} {'p50 s':>8} {'p95 s':>8}")
    for run in runs:
        print(
            f"{run.clients:>7} {run.server:>9} {run.requests:>5} {run.throughput:>8.2f} "
            f"{run.pct(0.5):>8.3f} {run.pct(0.95):>8.3f}"
        )
    print("\nratios (service / baseline):")
    for clients in args.concurrency:
        b, s = (next(r for r in runs if r.clients == clients and r.server == n) for n in ("baseline", "service"))
        print(
            f"  clients={clients:<3d} throughput x{s.throughput / b.throughput:.2f}   "
            f"p50 x{s.pct(0.5) / b.pct(0.5):.2f}   p95 x{s.pct(0.95) / b.pct(0.95):.2f}"
        )
    if hits:
        # The first request of the repeat run is a miss for the service; the rest are hits.
        b_rep, s_rep = hits["baseline"].latencies[1:], hits["service"].latencies[1:]
        print(
            f"\nrepeated image, p50 over {len(s_rep)} requests: "
            f"service (cache hit) {statistics.median(s_rep) * 1000:.1f} ms,"
            f" baseline (recompute) {statistics.median(b_rep) * 1000:.1f} ms, "
            f"x{statistics.median(b_rep) / statistics.median(s_rep):.1f} faster"
        )
    print(
        f"peak RSS: service {peaks['service']:.0f} MiB, baseline {peaks['baseline']:.0f} MiB "
        f"(x{peaks['service'] / max(1.0, peaks['baseline']):.2f})"
    )
    if clicks:
        print(
            f"ONNX decoder per click (1500x2250, onnxruntime CPU): p50 {clicks[0] * 1000:.1f} ms, "
            f"p95 {clicks[1] * 1000:.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="vit_tiny", choices=["vit_tiny", "vit_b", "vit_l", "vit_h"])
    parser.add_argument("--checkpoint", help="checkpoint file (default: random weights written to a temp dir)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--engine", default="auto", choices=["auto", "torch", "fused", "openvino"])
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16", "float16", "int8"])
    parser.add_argument("--max-batch-size", type=int, default=4)
    parser.add_argument("--baseline-workers", type=int, default=1)
    parser.add_argument("--request-timeout", type=float, default=3600, help="service per-request deadline (s)")
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 16])
    parser.add_argument("--requests-per-client", type=int, default=1)
    parser.add_argument("--min-requests", type=int, default=4)
    parser.add_argument(
        "--repeats", type=int, default=6, help="requests for the repeated-image test (the first misses; 0 skips it)"
    )
    parser.add_argument("--clicks", type=int, default=20, help="decoder runs (0 skips the decoder)")
    parser.add_argument("--image-size", type=lambda s: tuple(int(x) for x in s.split("x")), default=(1280, 720))
    args = parser.parse_args()
    if args.repeats == 1 or args.repeats < 0:
        parser.error("--repeats: 0 (no repeated-image test) or at least 2 (the first request misses the cache)")
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
