"""glibc malloc settings for relaying multi-megabyte answers (issue 13: the gateway's overhead).

asyncio reads a socket 256 KiB at a time and aiohttp's HTTP parser copies every body piece into a new bytes
object. Each piece is above glibc's default mmap threshold (128 KiB, raised only after such a block is freed),
and the top of the heap is trimmed back to the kernel as soon as the pieces are freed, so every piece of a
5.6 MB embedding answer was fresh memory: an mmap or a brk, then page faults as it was written. perf on the
busy gateway: page faults, page clearing and memory-cgroup charging ~12 % of its CPU; strace: ~21 brk calls per
invocation. With the mmap threshold at 16 MiB and the trim threshold at 64 MiB those pieces stay in the heap and
are reused from one invocation to the next. `bench/bench_gateway.py`, same machine, alternating runs: gateway
CPU per invocation 10.8-11.7 -> 7.0-7.3 ms, overhead p50 8.3-8.7 -> 4.8-5.8 ms (bench/README).

The cost: up to 64 MiB of freed heap kept by the process instead of returned at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

MMAP_THRESHOLD_BYTES = 16 << 20
TRIM_THRESHOLD_BYTES = 64 << 20
# glibc's mallopt(3) parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# The environment variables that set the same; where the deployment sets one, its choice stands.
ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def tune_malloc() -> bool:
    """Apply the thresholds with mallopt(3); False where there is no glibc mallopt or the environment sets them."""
    if any(os.environ.get(name) for name in ENVIRONMENT):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): their allocators have no such knobs
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
