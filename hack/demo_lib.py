"""Plumbing of hack/demo.py: the demo's folders, console output, background processes and their pid files.

Every process the demo starts runs in its own session with a pid file under ``<demo dir>/pids`` (JSON: pid,
the word its command line must contain, stop order), so that ``hack/demo.py down`` stops exactly those
processes — checking the command line first, so a recycled pid is never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
TTY = sys.stdout.isatty()
DIRECT_PORT_RANGE_SIZE = 16  # the CVAT direct-mode ports the demos' operator allocates (the chart's default)


class DemoError(RuntimeError):
    """A step failed; the message says which and where its log is."""


@dataclass(frozen=True)
class DemoPaths:
    """Everything the demo writes lives under one folder (default ``.demo/``, ``$DEMO_DIR`` overrides it)."""

    root: Path

    @property
    def cluster(self) -> Path:  # the demo's own control plane: never the tests' or `make cluster-up`'s
        return self.root / "cluster"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    def out(self, name: str) -> Path:
        return self.root / name

    def make(self) -> None:
        for folder in (self.root, self.pids, self.logs):
            folder.mkdir(parents=True, exist_ok=True)

    def read_state(self) -> dict[str, Any]:
        return json.loads(self.state.read_text()) if self.state.exists() else {}

    def write_state(self, **values: Any) -> None:
        self.state.write_text(json.dumps({**self.read_state(), **values}, indent=2))


# ---------------------------------------------------------------- console


def bold(text: str) -> str:
    return f"\033[1m{text}\033[0m" if TTY else text


def step(number: int, total: int, text: str) -> None:
    print(f"\n{bold(f'==> [{number}/{total}] {text}')}", flush=True)


def info(text: str = "") -> None:
    print(f"    {text}" if text else "", flush=True)


def block(text: str) -> None:
    for line in text.rstrip().splitlines():
        info(line)


class Progress:
    """One status line for a long wait: rewritten in place on a terminal, printed on change (or every 15 s)."""

    def __init__(self, what: str) -> None:
        self.what, self.start, self.last, self.last_print = what, time.monotonic(), "", 0.0

    def update(self, status: str) -> None:
        elapsed = time.monotonic() - self.start
        line = f"{self.what}: {status} ({elapsed:.0f}s)"
        if TTY:
            print(f"\r    {line[:150]:<150}", end="", flush=True)
        elif status != self.last or elapsed - self.last_print >= 15:
            info(line)
            self.last_print = elapsed
        self.last = status

    def done(self, status: str) -> None:
        if TTY:
            print("\r" + " " * 160 + "\r", end="")
        info(f"{self.what}: {status} ({time.monotonic() - self.start:.1f}s)")


def wait(what: str, check: Callable[[], tuple[bool, str]], timeout: float, interval: float = 0.5) -> str:
    """Poll ``check`` (→ done, status text) with a progress line; raise DemoError on timeout."""
    progress = Progress(what)
    deadline = time.monotonic() + timeout
    status = "starting"
    while time.monotonic() < deadline:
        try:
            done, status = check()
        except DemoError:
            progress.done("failed")
            raise
        except Exception as exc:  # the API or a process may still be coming up
            done, status = False, f"waiting ({type(exc).__name__})"
        if done:
            progress.done(status)
            return status
        progress.update(status)
        time.sleep(interval)
    progress.done(f"timed out: {status}")
    raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}: {status}")


# ---------------------------------------------------------------- processes


def spawn(
    paths: DemoPaths,
    name: str,
    argv: list[str],
    env: Mapping[str, str],
    marker: str,
    order: int,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a process in its own session, output to logs/<name>.log, and record its pid file."""
    log = (paths.logs / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        argv,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=cwd,
    )
    log.close()
    write_pid(paths, name, proc.pid, marker, order)
    return proc


def write_pid(paths: DemoPaths, name: str, pid: int, marker: str, order: int) -> None:
    (paths.pids / f"{name}.pid").write_text(json.dumps({"pid": pid, "marker": marker, "order": order}))


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int, marker: str) -> bool:
    """True when ``pid`` runs and its command line contains ``marker`` (not a recycled pid)."""
    cmdline = _cmdline(pid)
    return bool(cmdline) and marker in cmdline and not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def live_pid_files(paths: DemoPaths) -> list[tuple[Path, dict[str, Any]]]:
    entries = []
    for path in sorted(paths.pids.glob("*.pid")) if paths.pids.exists() else []:
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if alive(entry["pid"], entry["marker"]):
            entries.append((path, entry))
    return entries


def stop_pid(pid: int, marker: str, timeout: float = 20) -> None:
    """SIGTERM the process (its whole session: it was started with its own), then SIGKILL after ``timeout``."""
    if not alive(pid, marker):
        return
    for sig, grace in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not alive(pid, marker):
                _reap(pid)
                return
            time.sleep(0.1)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop_all(paths: DemoPaths) -> list[str]:
    """Stop every recorded process, lowest ``order`` first; returns the names stopped. Removes the pid files."""
    stopped = []
    entries = []
    for path in sorted(paths.pids.glob("*.pid")) if paths.pids.exists() else []:
        try:
            entries.append((path, json.loads(path.read_text())))
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
    for path, entry in sorted(entries, key=lambda e: (e[1]["order"], e[0].name)):
        if alive(entry["pid"], entry["marker"]):
            stop_pid(entry["pid"], entry["marker"])
            stopped.append(path.stem)
        path.unlink(missing_ok=True)
    stopped += [f"pod process {pid}" for pid in sweep(paths)]
    return stopped


def wait_http(url: str, name: str, proc: subprocess.Popen[bytes], paths: DemoPaths, timeout: float = 90) -> None:
    """Wait until ``url`` answers 200; fail with the end of the process's log if it exits first."""
    from harness.processes import http_get

    def check() -> tuple[bool, str]:
        if proc.poll() is not None:
            tail = (paths.logs / f"{name}.log").read_text(errors="replace")[-3000:]
            raise DemoError(f"{name} exited ({proc.returncode}); the end of {paths.logs / name}.log:\n{tail}")
        try:
            code = http_get(url, timeout=2)[0]
        except OSError:
            return False, "not answering yet"
        return code == 200, f"HTTP {code}"

    wait(f"{name} at {url}", check, timeout)


def sweep(paths: DemoPaths) -> list[int]:
    """Stop encoder processes whose environment points into this demo's pods/ folder (a pod process that was
    still starting when the pod runner stopped has no pid file yet)."""
    needle = f"={paths.root / 'pods'}/".encode()
    found = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit() or int(proc_dir.name) == os.getpid():
            continue
        try:
            if needle in (proc_dir / "environ").read_bytes():
                found.append(int(proc_dir.name))
        except OSError:
            continue
    for pid in found:
        stop_pid(pid, "sam-inference")
    return found


# ---------------------------------------------------------------- kubernetes


def run(argv: list[str], env: Mapping[str, str] | None = None, input: str | None = None, timeout: float = 300) -> str:
    proc = subprocess.run(
        argv, env={**os.environ, **(env or {})}, capture_output=True, text=True, input=input, timeout=timeout
    )
    if proc.returncode != 0:
        raise DemoError(f"{' '.join(argv[:4])} ... failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def chart_install(release: str, namespace: str, *sets: str, timeout: str, create_namespace: bool = False) -> list[str]:
    """helm arguments: ``upgrade --install`` charts/sam-operator, waiting, with the CVAT direct-mode ports taken from
    a free region of this machine below its ephemeral ports (the demos forward them 1:1, so nothing here may hold
    them, and no outgoing connection may take one as its source port)."""
    from harness.processes import free_port_block

    base = free_port_block(DIRECT_PORT_RANGE_SIZE)
    args = ["upgrade", "--install", release, str(REPO / "charts" / "sam-operator"), "-n", namespace]
    args += ["--create-namespace"] if create_namespace else []
    for value in (
        f"operator.directPorts.base={base}",
        f"operator.directPorts.rangeSize={DIRECT_PORT_RANGE_SIZE}",
        *sets,
    ):
        args += ["--set", value]
    return [*args, "--wait", "--timeout", timeout]


def run_script(script: str, env: Mapping[str, str]) -> None:
    """Run ``hack/<script>``, showing each line it prints as a demo info line; DemoError if it fails."""
    proc = subprocess.Popen(
        ["bash", str(REPO / "hack" / script)],
        env=dict(env),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        info(line.rstrip())
    if proc.wait() != 0:
        raise DemoError(f"hack/{script} failed (output above)")


def token_kubeconfig(kubectl: list[str], admin: Path, namespace: str, service_account: str, out: Path) -> Path:
    """A kubeconfig authenticating as the chart's ServiceAccount (bound token), so its RBAC is what we get."""
    from harness.cluster import service_account_kubeconfig

    token = run([*kubectl, "create", "token", service_account, "-n", namespace, "--duration=12h"]).strip()
    return service_account_kubeconfig(admin, service_account, token, out)


def deployment_container(kubectl: list[str], namespace: str, name: str) -> tuple[list[str], dict[str, str]]:
    """(command, plain env) of the Deployment's only container, as the API server stores it."""
    deployment = json.loads(run([*kubectl, "get", "deployment", name, "-n", namespace, "-o", "json"]))
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: str(e["value"]) for e in container.get("env") or [] if "value" in e}
    return list(container["command"]), env


# ---------------------------------------------------------------- metrics


Sample = tuple[str, tuple[tuple[str, str], ...]]


def scrape(url: str) -> dict[Sample, float]:
    """Counters, gauges and histogram counts of one /metrics page (buckets, sums and _created left out)."""
    from harness.processes import http_get

    code, body = http_get(url)
    if code != 200:
        return {}
    samples: dict[Sample, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.name.endswith(("_bucket", "_sum", "_created")) or not s.name.startswith("sam_"):
                continue
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def moved(before: dict[Sample, float], after: dict[Sample, float]) -> list[str]:
    lines = []
    for key in sorted(after):
        old, new = before.get(key, 0.0), after[key]
        if new != old:
            name, labels = key
            label_text = ",".join(f'{k}="{v}"' for k, v in labels)
            lines.append(f"{name}{{{label_text}}}  {old:g} -> {new:g}")
    return lines
