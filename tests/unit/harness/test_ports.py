"""The harness's port blocks for CVAT direct-mode ranges: free, and out of the kernel's ephemeral range."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from harness import processes
from harness.processes import free_port_block


def test_a_block_is_free_and_below_the_ephemeral_ports() -> None:
    base = free_port_block(64)
    low, high = processes.ephemeral_range()
    assert base >= processes.LOWEST_BLOCK_PORT and (base + 64 <= low or base > high)
    listeners = []
    try:
        for port in range(base, base + 64):  # every port of it binds
            s = socket.socket()
            listeners.append(s)
            s.bind(("127.0.0.1", port))
    finally:
        for s in listeners:
            s.close()


def test_a_block_skips_a_port_someone_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    # The held port and the ports around it come from a free block outside the ephemeral range: a port the kernel
    # hands out (bind to 0) has neighbours that other connections on a busy machine may hold (a CI run drew a
    # fourth base that way).
    start = free_port_block(16)
    with socket.socket() as held:
        held.bind(("127.0.0.1", start + 3))
        # Two draws whose block covers the held port, then one just past it.
        bases = iter([start, start - 4, start + 4])
        monkeypatch.setattr(processes.random.Random, "randrange", lambda self, a, b: next(bases))
        assert free_port_block(8) == start + 4


def test_a_range_that_starts_low_gives_a_block_above_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ports = tmp_path / "ip_local_port_range"
    ports.write_text("1024\t60999\n")
    monkeypatch.setattr(processes, "EPHEMERAL_RANGE", ports)
    base = free_port_block(16)
    assert base >= 61000 and base + 16 <= 65536
    ports.write_text("1024\t65535\n")  # no room on either side: an error, never a block the kernel may hand out
    with pytest.raises(RuntimeError, match="outside the ephemeral range 1024-65535"):
        free_port_block(16)
