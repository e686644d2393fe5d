"""Processes the tests run for real: the operator, the gateway, and inference servers standing in for pods."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_BLOCK_PORT = 10000


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def ephemeral_range() -> tuple[int, int]:
    """The kernel's ephemeral port range (the source ports of outgoing connections), Linux's default if unknown."""
    try:
        low, high = (int(field) for field in EPHEMERAL_RANGE.read_text().split()[:2])
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def free_port_block(size: int) -> int:
    """The first of `size` consecutive loopback ports, free now, outside this machine's ephemeral range: a range
    for CVAT direct-mode ports, which a gateway binds later, after its own connections are open. Inside the
    ephemeral range (where `free_port` answers) any outgoing connection may take one of them as its source port
    first: a CI demo failed on "[Errno 98] ... address already in use" for a direct port in a block chosen that
    way. Below the range where it leaves room, else above it; an error where neither has room."""
    low, high = ephemeral_range()
    below, above = (LOWEST_BLOCK_PORT, low - size), (high + 1, 65536 - size)
    spans = [(first, last) for first, last in (below, above) if first < last]
    if not spans:
        raise RuntimeError(f"no room for {size} ports outside the ephemeral range {low}-{high}")
    rng = random.Random()  # parallel runs on one machine start in different places
    for _ in range(100):
        first, last = spans[0] if len(spans) == 1 or rng.random() < 0.9 else spans[1]
        base = rng.randrange(first, last)
        if all(_bindable(port) for port in range(base, base + size)):
            return base
    raise RuntimeError(f"no {size} consecutive free ports outside the ephemeral range {low}-{high}")


def http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


class ManagedProcess:
    """A child process with its output in a log file; stopped (SIGTERM, then SIGKILL) by ``stop``."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = {**os.environ, **env}
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_http(self, url: str, timeout: float = 60, status: int = 200) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise AssertionError(f"{self.name} exited ({self.proc and self.proc.returncode}):\n{self.output()}")
            try:
                if http_get(url, timeout=2)[0] == status:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.name} not answering {url} after {timeout}s:\n{self.output()[-4000:]}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """Hard kill (the fault tests' 'the process died')."""
        if self.proc and self.running:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 15) -> None:
        if not self.proc or not self.running:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def operator_process(
    kubeconfig: Path, log_dir: Path, name: str = "operator", extra_env: Mapping[str, str] | None = None
) -> tuple[ManagedProcess, int, int]:
    """The operator exactly as its Deployment runs it (``sam-operator``); returns (process, metrics, health)."""
    metrics_port, health_port = free_port(), free_port()
    env = {
        "KUBECONFIG": str(kubeconfig),
        "SAM_OPERATOR_METRICS_PORT": str(metrics_port),
        "SAM_OPERATOR_METRICS_HOST": "127.0.0.1",
        "SAM_OPERATOR_HEALTH_PORT": str(health_port),
        "SAM_OPERATOR_HEALTH_HOST": "127.0.0.1",
        "SAM_OPERATOR_RESYNC_INTERVAL_SECONDS": "10",
        **(extra_env or {}),
    }
    proc = ManagedProcess(name, [str(VENV_BIN / "sam-operator")], env, log_dir)
    return proc, metrics_port, health_port


def gateway_process(
    kubeconfig: Path,
    log_dir: Path,
    port: int,
    namespaces: str = "",
    name: str = "gateway",
    extra_env: Mapping[str, str] | None = None,
) -> ManagedProcess:
    """The gateway as its Deployment runs it (``sam-gateway``), dialling pods at their harness address."""
    env = {
        "SAM_GATEWAY_KUBECONFIG": str(kubeconfig),
        "SAM_GATEWAY_HOST": "127.0.0.1",
        "SAM_GATEWAY_PORT": str(port),
        "SAM_GATEWAY_DIRECT_HOST": "127.0.0.1",
        "SAM_GATEWAY_NAMESPACES": namespaces,
        "SAM_GATEWAY_POD_ADDRESS_ANNOTATION": "samoperator.io/test-address",
        **(extra_env or {}),
    }
    return ManagedProcess(name, [str(VENV_BIN / "sam-gateway")], env, log_dir)
