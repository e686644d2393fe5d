"""Overload soak: N CVAT-shaped clients against ONE encoder replica behind the real gateway, no cluster.

The script starts, on 127.0.0.1:
- the encoder: the real `sam-inference serve` (tiny random-weight SAM on the CPU by default) with a small queue;
- the gateway: the real `sam_gateway` app (`bench/soak_gateway_app.py`), whose catalog is
  filled statically with one Ready SamModel and one encoder pod annotated with the encoder's address (the
  `samoperator.io/test-address` mode the e2e harness uses), so it needs no Kubernetes API;
then runs `--clients` concurrent clients for `--duration` seconds. Each client behaves like CVAT's server
calling the SAM function in dashboard mode: `POST /api/function_invocations` with `x-nuclio-function-name`, the
frame as base64 JSON (cvat-protocol §4.3), a short think time between calls, frames drawn from a pool with
repeats (annotators revisit frames, so some requests are cache hits). It reports counts of 200 / 429 / other
4xx / 5xx / client errors, latency percentiles, and the encoder's and gateway's peak RSS (VmHWM from /proc).

    .venv/bin/python bench/soak_gateway.py                              # 50 clients, 60 s
    .venv/bin/python bench/soak_gateway.py --clients 100 --duration 600 --max-queue 16
    .venv/bin/python bench/soak_gateway.py --json /tmp/soak.json        # also write the figures as JSON

Exit status 1 when any 5xx or client error occurred (deliberate 429s are fine).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from harness.processes import free_port
from harness.waiting import until_http_ok
from PIL import Image
from soak_gateway_app import FUNCTION  # bench/ is on sys.path: this script runs from there

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ load generator
def frame(seed: int, width: int, height: int) -> bytes:
    """A JPEG frame that compresses like a photo (smooth gradients plus noise), distinct per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * rng.uniform(0.1, 0.5) + y * rng.uniform(0.1, 0.5) + rng.uniform(0, 255)) % 256] * 3, -1)
    noisy = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


class Peak:
    """Samples VmRSS of a pid and reads its VmHWM (the kernel's own high-water mark)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _field(self, name: str) -> int | None:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith(name + ":"):
                    return int(line.split()[1]) * 1024
        return None

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            rss = self._field("VmRSS")
            if rss is not None:
                self.samples.append(rss)

    def start(self) -> Peak:
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        hwm = self._field("VmHWM") or 0
        return {
            "vmhwm_mib": hwm / 2**20,
            "rss_start_mib": (self.samples[0] if self.samples else 0) / 2**20,
            "rss_end_mib": (self.samples[-1] if self.samples else 0) / 2**20,
            "rss_max_sampled_mib": max(self.samples, default=0) / 2**20,
            # RSS at each tenth of the run: a plateau is fragmentation/arenas, a steady climb is a leak.
            "rss_by_tenth_mib": [
                self.samples[min(len(self.samples) - 1, len(self.samples) * i // 10)] / 2**20 for i in range(1, 11)
            ]
            if self.samples
            else [],
        }


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


async def client_loop(
    session: aiohttp.ClientSession,
    url: str,
    bodies: list[bytes],
    hot: int,
    until: float,
    think_s: float,
    rng: random.Random,
    results: list[tuple[int, float]],
    token: str | None,
) -> None:
    headers = {
        "x-nuclio-function-name": FUNCTION,
        "x-nuclio-path": "/",
        "x-nuclio-project-name": "cvat",
        "x-nuclio-function-namespace": "nuclio",
        "Content-Type": "application/json",
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    while time.monotonic() < until:
        index = rng.randrange(hot) if rng.random() < 0.5 else rng.randrange(len(bodies))
        started = time.perf_counter()
        try:
            async with session.post(url, data=bodies[index], headers=headers) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError):
            status = -1
        results.append((status, time.perf_counter() - started))
        await asyncio.sleep(think_s * rng.uniform(0.5, 1.5))


TOKEN = "soak-token"


def start_stack(args: argparse.Namespace, work: Path, procs: list[subprocess.Popen[bytes]]) -> tuple[int, int]:
    """Start the encoder and the gateway; return their ports."""
    checkpoint = work / "sam_vit_tiny.pth"
    subprocess.run(
        [sys.executable, "-m", "sam_inference", "make-tiny", "--output", str(checkpoint)],
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "inference")},
        stdout=subprocess.DEVNULL,
    )
    enc_port, gw_port = free_port(), free_port()
    encoder_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "inference"),
        "SAM_INFERENCE_HOST": "127.0.0.1",
        "SAM_INFERENCE_PORT": str(enc_port),
        "SAM_INFERENCE_MODEL_VARIANT": args.variant,
        "SAM_INFERENCE_CHECKPOINT_PATH": str(checkpoint),
        "SAM_INFERENCE_DEVICE": args.device,
        "SAM_INFERENCE_MAX_QUEUE": str(args.max_queue),
        "SAM_INFERENCE_MAX_BATCH_SIZE": str(args.max_batch),
        "SAM_INFERENCE_LOG_LEVEL": "WARNING",
    }
    with (work / "encoder.log").open("wb") as log:
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "sam_inference", "serve"],
                env=encoder_env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    with (work / "gateway.log").open("wb") as log:
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).with_name("soak_gateway_app.py")),
                    str(gw_port),
                    f"127.0.0.1:{enc_port}",
                    TOKEN,
                ],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    return enc_port, gw_port


async def load(
    args: argparse.Namespace, procs: list[subprocess.Popen[bytes]], enc_port: int, gw_port: int
) -> tuple[list[tuple[int, float]], float, dict[str, dict[str, Any]], str]:
    encoder, gateway = procs
    await until_http_ok(f"http://127.0.0.1:{enc_port}/readyz", encoder)
    await until_http_ok(f"http://127.0.0.1:{gw_port}/healthz", gateway)
    print(f"encoder pid {encoder.pid} on :{enc_port}, gateway pid {gateway.pid} on :{gw_port}")
    width, height = (int(v) for v in args.size.split("x"))
    bodies = [
        json.dumps(
            {
                "image": base64.b64encode(frame(i, width, height)).decode(),
                "pos_points": [],
                "neg_points": [],
                "obj_bbox": [],
            }
        ).encode()
        for i in range(args.frames)
    ]
    print(
        f"{args.frames} frames of {width}x{height}, ~{sum(map(len, bodies)) // len(bodies) // 1024} KiB "
        f"per request body; {args.clients} clients for {args.duration:g} s"
    )
    peaks = {"encoder": Peak(encoder.pid).start(), "gateway": Peak(gateway.pid).start()}
    results: list[tuple[int, float]] = []
    url = f"http://127.0.0.1:{gw_port}/api/function_invocations"
    timeout = aiohttp.ClientTimeout(total=130)  # CVAT's own request timeout is 120 s
    started = time.monotonic()
    until = started + args.duration
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        await asyncio.gather(
            *(
                client_loop(
                    session, url, bodies, args.hot, until, args.think_ms / 1000, random.Random(i), results, TOKEN
                )
                for i in range(args.clients)
            )
        )
    elapsed = time.monotonic() - started
    memory = {name: peak.stop() for name, peak in peaks.items()}
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{enc_port}/metrics") as resp:
        metrics_text = await resp.text()
    return results, elapsed, memory, metrics_text


def soak(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="sam-soak-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        enc_port, gw_port = start_stack(args, work, procs)
        results, elapsed, memory, metrics_text = asyncio.run(load(args, procs, enc_port, gw_port))
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
    print(f"logs in {work}")
    codes = Counter(status for status, _ in results)
    lat_all = [t for _, t in results]
    lat_ok = [t for s, t in results if s == 200]
    lat_429 = [t for s, t in results if s == 429]
    hits = next(
        (
            float(line.split()[-1])
            for line in metrics_text.splitlines()
            if line.startswith("sam_inference_cache_hits_total")
        ),
        0.0,
    )
    report: dict[str, Any] = {
        "clients": args.clients,
        "duration_s": round(elapsed, 1),
        "requests": len(results),
        "codes": {str(k): v for k, v in sorted(codes.items())},
        "ok_per_s": round(len(lat_ok) / elapsed, 2),
        "n_5xx": sum(v for k, v in codes.items() if k >= 500),
        "client_errors": codes.get(-1, 0),
        "latency_all_s": {q: _r(pct(lat_all, float(q[1:]))) for q in ("p50", "p95", "p99")},
        "latency_200_s": {q: _r(pct(lat_ok, float(q[1:]))) for q in ("p50", "p95", "p99")},
        "latency_429_s": {q: _r(pct(lat_429, float(q[1:]))) for q in ("p50", "p99")},
        "max_latency_s": round(max(lat_all, default=0), 3),
        "encoder_cache_hits": hits,
        "memory": {
            k: {m: [round(x) for x in v] if isinstance(v, list) else round(v, 1) for m, v in d.items()}
            for k, d in memory.items()
        },
        "settings": {
            "max_queue": args.max_queue,
            "max_batch": args.max_batch,
            "variant": args.variant,
            "device": args.device,
            "frames": args.frames,
            "size": args.size,
            "think_ms": args.think_ms,
        },
    }
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 1 if report["n_5xx"] or report["client_errors"] else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (e.g. 600 for a long soak)")
    parser.add_argument("--max-queue", type=int, default=8, help="SAM_INFERENCE_MAX_QUEUE of the encoder")
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--variant", default="vit_tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=200, help="distinct frames in the pool")
    parser.add_argument("--hot", type=int, default=10, help="half of the requests reuse one of this many frames")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--think-ms", type=float, default=200.0, help="mean pause between one client's calls")
    parser.add_argument("--json", help="also write the report here")
    return soak(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
