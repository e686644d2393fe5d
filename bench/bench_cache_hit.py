"""Benchmark: an embedding-cache hit inside the encoder service (CVAT's `POST /`, embedding mode, 1080p JPEG).

Each server is a child process running the service's own app (`create_app`, tiny model, CPU) with one extra
outermost middleware that records, per request to `/`:
- `in service`: from the moment aiohttp hands the request to the app (headers parsed, body not read yet) until
  the response is written (`write_eof` returned: the whole body handed to the socket, waiting for the client
  to read where the socket buffer is full);
- `handler`: the same start until the handler returned its response (what `sam_inference_request_duration_seconds`
  measures);
- `CPU`: the server process's CPU time (all threads) over the `in service` span, what the hit costs where the
  cores are shared.
The client (this process) sends the same frame again and again (the first request encodes it; the rest are
hits), alternating between the servers when `--baseline` names a second source tree, e.g. the previous commit:

    mkdir -p /tmp/base && git archive HEAD~3 inference | tar -x -C /tmp/base
    .venv/bin/python bench/bench_cache_hit.py --requests 60 --baseline /tmp/base/inference
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from harness.processes import free_port

ROOT = Path(__file__).resolve().parent
TIMINGS = "/_bench/timings"


def serve(port: int, checkpoint: Path) -> None:
    """Child: the service's app on 127.0.0.1:`port` with the timing middleware and a route to read it."""
    from aiohttp import web
    from sam_inference.__main__ import build_torch_predictor
    from sam_inference.app import create_app
    from sam_inference.settings import InferenceSettings

    settings = InferenceSettings(
        checkpoint_path=checkpoint, model_variant="vit_tiny", device="cpu", model_id="bench", mode="embedding"
    )
    app = create_app(settings, predictor_factory=build_torch_predictor)
    records: list[tuple[float, float, float]] = []

    @web.middleware
    async def timing(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
        started, started_cpu = time.perf_counter(), time.process_time()
        response = await handler(request)
        handled = time.perf_counter()
        await response.prepare(request)
        await response.write_eof()
        if request.path == "/":
            records.append((time.perf_counter() - started, handled - started, time.process_time() - started_cpu))
        return response

    async def timings(_: web.Request) -> web.Response:
        return web.json_response(records)

    app.middlewares.insert(0, timing)
    app.router.add_get(TIMINGS, timings)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def frame_1080p() -> bytes:
    sys.path.insert(0, str(ROOT))
    from bench_encoder import jpeg

    return jpeg(0, 1920, 1080)


async def wait_ready(session: aiohttp.ClientSession, url: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            async with session.get(url + "/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f}s")


async def run(args: argparse.Namespace, urls: dict[str, str]) -> dict[str, list[float]]:
    body = json.dumps({"image": base64.b64encode(frame_1080p()).decode(), "pos_points": [], "neg_points": []})
    headers = {"Content-Type": "application/json"}
    client: dict[str, list[float]] = {name: [] for name in urls}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        for url in urls.values():
            await wait_ready(session, url)
        for i in range(args.requests + 1):
            for name, url in urls.items():
                started = time.perf_counter()
                async with session.post(url + "/", data=body, headers=headers) as response:
                    payload = await response.read()
                    cache = response.headers.get("X-Cache")
                elapsed = time.perf_counter() - started
                if response.status != 200 or len(payload) != 5_592_420:
                    raise RuntimeError(f"{name}: HTTP {response.status}, {len(payload)} bytes")
                if i > 0:
                    assert cache == "hit", cache
                    client[name].append(elapsed)
        timings = {}
        for name, url in urls.items():
            async with session.get(url + TIMINGS) as response:
                timings[name] = (await response.json())[1:]  # the first request was the miss
    print(f"cache hit, POST / embedding mode, 1920x1080 JPEG, {args.requests} requests per server, interleaved")
    print("| server | in service p50 / p95 ms | handler p50 / p95 ms | CPU p50 ms | client round trip p50 ms |")
    print("|---|---|---|---|---|")
    for name in urls:
        service = [t[0] for t in timings[name]]
        handler = [t[1] for t in timings[name]]
        cpu = [t[2] for t in timings[name]]
        print(
            f"| {name} | {pct(service, 0.5):.2f} / {pct(service, 0.95):.2f} | {pct(handler, 0.5):.2f} / "
            f"{pct(handler, 0.95):.2f} | {pct(cpu, 0.5):.2f} | {statistics.median(client[name]) * 1000:.2f} |"
        )
    return client


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--baseline", type=Path, help="another tree's inference/ dir (its sam_inference) to compare")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.checkpoint)
        return
    from sam_inference.torch_models.tiny import write_tiny_checkpoint

    checkpoint = Path(tempfile.mkdtemp(prefix="sam-hit-")) / "tiny.pth"
    write_tiny_checkpoint(checkpoint)
    trees = {"this tree": None} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    servers, urls = [], {}
    for name, tree in trees.items():
        port = free_port()
        env = dict(os.environ)
        if tree is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(tree), env.get("PYTHONPATH", "")])
        command = [sys.executable, __file__, "--serve", str(port), "--checkpoint", str(checkpoint)]
        servers.append(subprocess.Popen(command, env=env))
        urls[name] = f"http://127.0.0.1:{port}"
    try:
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        asyncio.run(run(args, urls))
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
