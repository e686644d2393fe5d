"""Benchmark: what the gateway adds to a cache-hit invocation of a 1080p frame (issue 13: goal < 3 ms p50).

Starts, on 127.0.0.1, the real encoder (`sam-inference serve`, tiny random-weight SAM on the CPU) and the real
gateway (`bench/soak_gateway_app.py`: the `sam_gateway` app with a static catalog naming that encoder, no
Kubernetes API), then posts the same 1080p JPEG frame in CVAT's dashboard-mode shape (cvat-protocol §4.3) many
times. The first call encodes the frame; every timed call is an embedding-cache hit answered with the 5.6 MB
`{"blob": ...}`. Direct-to-encoder and through-gateway requests alternate (the order flips every round), so load
from other jobs hits both alike. Prints p50/p95 of both, the overhead (gateway minus direct) and the load average.

    .venv/bin/python bench/bench_gateway.py                          # 60 rounds
    .venv/bin/python bench/bench_gateway.py --rounds 40 --size 1920x1080
    .venv/bin/python bench/bench_gateway.py --profile /tmp/gw.pstats # the gateway under cProfile: top entries
    .venv/bin/python bench/bench_gateway.py --bare-relay             # + the floor: a bare TCP relay process

``--bare-relay`` adds a third path, interleaved too: the direct request through a bare TCP relay (two threads per
connection, blocking sockets, 4 MiB reads, no HTTP parsing), the least any extra process on the path can cost here;
``--bare-relay splice`` makes its threads move the bytes with splice(2) through a pipe (zero-copy: the kernel hands
the socket's pages on, the relay never reads them), ``--bare-relay asyncio`` makes it asyncio protocols instead
(what the gateway runs on, without HTTP).

With ``--profile`` the gateway runs under cProfile, which slows it down: its figures show where the time goes,
not the overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import fcntl
import io
import json
import os
import pstats
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import numpy as np
from harness.processes import free_port
from harness.waiting import until_http_ok
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
FUNCTION = "pth-facebookresearch-sam-vit-h"  # what bench/soak_gateway_app.py lists
BLOB_CHARS = 5_592_408  # base64 of float32[1,256,64,64] (cvat-protocol §2.3)


def frame(width: int, height: int) -> bytes:
    """A JPEG frame that compresses like a photo (smooth gradients plus noise)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 0.3 + y * 0.2 + c * 40) % 256 for c in range(3)], -1)
    noisy = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (Linux /proc), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start_stack(
    work: Path, profile: Path | None, bare_relay: str | None
) -> tuple[list[subprocess.Popen[bytes]], int, int, int | None]:
    """Encoder, gateway and (``bare_relay``) the relay; their processes and ports."""
    checkpoint = work / "sam_vit_tiny.pth"
    subprocess.run(
        [sys.executable, "-m", "sam_inference", "make-tiny", "--output", str(checkpoint)],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    enc_port, gw_port = free_port(), free_port()
    encoder_env = {
        **os.environ,
        "SAM_INFERENCE_HOST": "127.0.0.1",
        "SAM_INFERENCE_PORT": str(enc_port),
        "SAM_INFERENCE_MODEL_VARIANT": "vit_tiny",
        "SAM_INFERENCE_CHECKPOINT_PATH": str(checkpoint),
        "SAM_INFERENCE_DEVICE": "cpu",
        "SAM_INFERENCE_LOG_LEVEL": "WARNING",
    }
    app = str(ROOT / "bench" / "soak_gateway_app.py")
    profiler = [sys.executable, "-m", "cProfile", "-o", str(profile)] if profile else [sys.executable]
    procs = []
    with (work / "encoder.log").open("wb") as log:
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "sam_inference", "serve"], env=encoder_env, cwd=ROOT, stdout=log, stderr=log
            )
        )
    with (work / "gateway.log").open("wb") as log:
        # An inherited PYTHONPATH comes first: PYTHONPATH=/tmp/old/gateway measures another version of sam_gateway.
        gateway_env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT / "bench")])),
        }
        where = [sys.executable, "-c", "import sam_gateway.routes as r; print(r.__file__)"]
        print("gateway code:", subprocess.run(where, env=gateway_env, capture_output=True, text=True).stdout.strip())
        procs.append(
            subprocess.Popen(
                [*profiler, app, str(gw_port), f"127.0.0.1:{enc_port}"],
                env=gateway_env,
                cwd=ROOT,
                stdout=log,
                stderr=log,
            )
        )
    relay_port = None
    if bare_relay:
        relay_port = free_port()
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, f"--serve-{bare_relay}-relay", str(relay_port), str(enc_port)], cwd=ROOT
            )
        )
    return procs, enc_port, gw_port, relay_port


def copy_pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy ``source`` into ``sink`` through a 4 MiB buffer until ``source`` ends, then end ``sink``."""
    buffer = bytearray(4 << 20)
    view = memoryview(buffer)
    with contextlib.suppress(OSError):
        while count := source.recv_into(buffer):
            sink.sendall(view[:count])
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def splice_pump(source: socket.socket, sink: socket.socket) -> None:
    """:func:`copy_pump` by splice(2) through a 1 MiB pipe: the bytes never enter the relay's memory (zero-copy)."""
    read_end, write_end = os.pipe()
    with contextlib.suppress(OSError):
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 1 << 20)
    with contextlib.suppress(OSError):
        while count := os.splice(source.fileno(), write_end, 1 << 20):
            while count:
                count -= os.splice(read_end, sink.fileno(), count)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
    os.close(read_end)
    os.close(write_end)


def serve_relay(listen_port: int, target_port: int, pump: Callable[[socket.socket, socket.socket], None]) -> None:
    """Forward every connection on ``listen_port`` to ``target_port`` byte for byte, both ways (a thread running
    ``pump`` each way), until killed."""
    server = socket.create_server(("127.0.0.1", listen_port))
    while True:
        client, _ = server.accept()
        upstream = socket.create_connection(("127.0.0.1", target_port))
        for end in (client, upstream):
            end.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()


def serve_asyncio_relay(listen_port: int, target_port: int) -> None:
    """:func:`serve_relay` on asyncio protocols (what the gateway runs on): each piece read is written on at once."""

    class Pipe(asyncio.Protocol):
        def __init__(self) -> None:
            self.transport: asyncio.Transport | None = None
            self.peer: Pipe | None = None
            self.pending: list[bytes] = []

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            if self.peer is not None and self.peer.transport is not None:
                self.peer.transport.write(data)
            else:
                self.pending.append(data)

        def connection_lost(self, exc: Exception | None) -> None:
            if self.peer is not None and self.peer.transport is not None:
                self.peer.transport.close()

    async def accept(reader_side: Pipe) -> None:
        loop = asyncio.get_running_loop()
        _, upstream = await loop.create_connection(Pipe, "127.0.0.1", target_port)
        upstream.peer, reader_side.peer = reader_side, upstream
        assert upstream.transport is not None
        for data in reader_side.pending:
            upstream.transport.write(data)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        connecting: set[asyncio.Task[None]] = set()

        def client_side() -> Pipe:
            pipe = Pipe()
            task = loop.create_task(accept(pipe))
            connecting.add(task)
            task.add_done_callback(connecting.discard)
            return pipe

        server = await loop.create_server(client_side, "127.0.0.1", listen_port)
        await server.serve_forever()

    asyncio.run(run())


async def timed_post(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]) -> bytes:
    async with session.post(url, data=body, headers=headers) as response:
        payload = await response.read()
        if response.status != 200:
            raise RuntimeError(f"{url}: HTTP {response.status}: {payload[:200]!r}")
    return payload


async def measure(
    args: argparse.Namespace, enc_port: int, gw_port: int, proxies: dict[str, int], relay_port: int | None
) -> dict[str, list[float]]:
    width, height = args.size
    image = frame(width, height)
    body = json.dumps(
        {"image": base64.b64encode(image).decode(), "pos_points": [[400, 300]], "neg_points": [], "obj_bbox": None}
    ).encode()
    print(f"frame {width}x{height} JPEG {len(image):,} B, request body {len(body):,} B")
    targets = {
        "direct": (f"http://127.0.0.1:{enc_port}/", {"Content-Type": "application/json"}),
        "gateway": (
            f"http://127.0.0.1:{gw_port}/api/function_invocations",
            {
                "Content-Type": "application/json",
                "x-nuclio-function-name": FUNCTION,
                "x-nuclio-path": "/",
                "x-nuclio-project-name": "cvat",
                "x-nuclio-function-namespace": "nuclio",
                "X-Nuclio-Invoke-Timeout": "120s",
            },
        ),
    }
    if relay_port is not None:
        targets["relay"] = (f"http://127.0.0.1:{relay_port}/", {"Content-Type": "application/json"})
    times: dict[str, list[float]] = {name: [] for name in targets}
    timeout = aiohttp.ClientTimeout(total=600)
    # One kept-alive connection per target, as CVAT's requests.Session keeps one to the dashboard.
    sessions = {name: aiohttp.ClientSession(timeout=timeout) for name in targets}
    try:
        answers = {}
        for _ in range(args.warmup):  # the first call encodes the frame; then both paths are warm
            for name, (url, headers) in targets.items():
                answers[name] = await timed_post(sessions[name], url, body, headers)
        blob = json.loads(answers["direct"])["blob"]
        assert len(blob) == BLOB_CHARS, len(blob)
        assert all(answer == answers["direct"] for answer in answers.values()), "a proxy changed the answer"
        print(f"answer {len(answers['direct']):,} B, identical on every path; load average {load_average()}")
        cpu_before = {name: cpu_seconds(pid) for name, pid in proxies.items()}
        for round_ in range(args.rounds):
            order = list(targets)[round_ % len(targets) :] + list(targets)[: round_ % len(targets)]
            for name in order:
                url, headers = targets[name]
                started = time.perf_counter()
                await timed_post(sessions[name], url, body, headers)
                times[name].append(time.perf_counter() - started)
        # Only the gateway's requests run in the gateway (the relay's in the relay): CPU per invocation, whatever the
        # machine's load.
        for name, pid in proxies.items():
            times[f"{name}_cpu"] = [(cpu_seconds(pid) - cpu_before[name]) / args.rounds]
    finally:
        for session in sessions.values():
            await session.close()
    return times


def report(times: dict[str, list[float]], load_before: str) -> None:
    direct, gateway = times["direct"], times["gateway"]
    overhead = [g - d for d, g in zip(direct, gateway, strict=True)]
    print(f"\n{len(direct)} rounds, interleaved; load average before {load_before}, after {load_average()}")
    print(f"{'path':<10}{'p50 ms':>10}{'p95 ms':>10}{'min ms':>10}")
    for name in ("direct", "gateway", "relay"):
        if values := times.get(name):
            print(
                f"{name:<10}{pct(values, 0.5) * 1e3:>10.2f}{pct(values, 0.95) * 1e3:>10.2f}{min(values) * 1e3:>10.2f}"
            )
    print(
        f"overhead p50 {(pct(gateway, 0.5) - pct(direct, 0.5)) * 1e3:.2f} ms "
        f"(median of per-round differences {statistics.median(overhead) * 1e3:.2f} ms; goal < 3 ms)"
    )
    if relay := times.get("relay"):
        print(
            f"bare relay overhead p50 {(pct(relay, 0.5) - pct(direct, 0.5)) * 1e3:.2f} ms (the floor of a proxy here)"
        )
    for name in ("gateway", "relay"):
        if cpu := times.get(f"{name}_cpu"):
            print(f"{name} CPU per invocation {cpu[0] * 1e3:.2f} ms (user + system, /proc)")


def print_profile(path: Path, top: int) -> None:
    stats = pstats.Stats(str(path))
    stats.strip_dirs()
    for order in ("tottime", "cumulative"):
        print(f"\n--- gateway profile, top {top} by {order} ---")
        stats.sort_stats(order).print_stats(top)


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="sam-bench-gw-"))
    profile = Path(args.profile) if args.profile else None
    procs, enc_port, gw_port, relay_port = start_stack(work, profile, args.bare_relay)
    encoder, gateway = procs[:2]
    try:
        await until_http_ok(f"http://127.0.0.1:{enc_port}/readyz", encoder, limit_s=300)
        await until_http_ok(f"http://127.0.0.1:{gw_port}/healthz", gateway, limit_s=120)
        load_before = load_average()
        proxies = {"gateway": gateway.pid}
        if relay_port is not None:
            proxies["relay"] = procs[2].pid
        times = await measure(args, enc_port, gw_port, proxies, relay_port)
        report(times, load_before)
    finally:
        # SIGINT: aiohttp's run_app exits cleanly, so cProfile writes its file.
        gateway.send_signal(signal.SIGINT)
        for proc in [encoder, *procs[2:]]:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        print(f"logs in {work}")
    if profile:
        print_profile(profile, args.top)


def parse_size(text: str) -> tuple[int, int]:
    width, height = text.lower().split("x")
    return int(width), int(height)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=60, help="timed rounds (one request per path each)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first (the first encodes)")
    parser.add_argument("--size", type=parse_size, default=(1920, 1080), help="frame WIDTHxHEIGHT")
    parser.add_argument("--profile", help="run the gateway under cProfile, write the stats here, print the top")
    parser.add_argument("--top", type=int, default=25, help="profile entries to print")
    parser.add_argument(
        "--bare-relay",
        nargs="?",
        const="threads",
        choices=["threads", "asyncio", "splice"],
        help="also time a bare TCP relay (the floor): threads with 4 MiB reads (default), threads moving the bytes "
        "by splice(2) (zero-copy), or asyncio protocols",
    )
    for kind in ("threads", "asyncio", "splice"):
        parser.add_argument(f"--serve-{kind}-relay", nargs=2, type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve_threads_relay or arguments.serve_splice_relay:
        listen, target = arguments.serve_threads_relay or arguments.serve_splice_relay
        serve_relay(listen, target, copy_pump if arguments.serve_threads_relay else splice_pump)
    elif arguments.serve_asyncio_relay:
        serve_asyncio_relay(*arguments.serve_asyncio_relay)
    else:
        asyncio.run(main(arguments))
