"""The gateway's glibc malloc thresholds (issue 13): after `tune_malloc`, a body-sized piece (1 MiB, above glibc's
default 128 KiB mmap threshold) comes from the heap, not from a fresh mmap; a deployment's own MALLOC_* wins.
Each case runs in a child process, so the test process's allocator stays as it was."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

CHILD = """
import ctypes, sys
from sam_gateway.allocator import tune_malloc

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
tuned = tune_malloc() if sys.argv[1] == "tune" else None
before = libc.mallinfo2().hblks
piece = bytearray(1 << 20)  # one relayed piece's worth, well above 128 KiB
print(tuned, libc.mallinfo2().hblks - before)
"""

glibc = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="mallopt(3) thresholds are glibc's"
)


def _child(mode: str, **env: str) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode], env={**clean, **env}, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[1])


@glibc
def test_untuned_a_large_piece_is_a_fresh_mmap() -> None:
    assert _child("plain") == ("None", 1)


@glibc
def test_tuned_a_large_piece_comes_from_the_heap() -> None:
    assert _child("tune") == ("True", 0)


@glibc
def test_a_deployment_setting_the_thresholds_keeps_its_own() -> None:
    tuned, mmapped = _child("tune", MALLOC_MMAP_THRESHOLD_="131072")
    assert (tuned, mmapped) == ("False", 1)
