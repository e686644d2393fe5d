"""Fault injection on the local control plane that hack/cluster-up.sh started.

Each component runs from a pid file (``$SAM_CLUSTER_DIR/pids/<name>.pid``) and logs to ``logs/<name>.log``.
:class:`Component` stops one and starts it again with exactly its former argv, environment and working
directory (read from ``/proc/<pid>``), detached the way cluster-up.sh detaches it, and rewrites the pid file so
that hack/cluster-down.sh still stops the new process. :func:`kwok_gpu_node` builds fake GPU nodes the tests may
add and delete without touching the nodes other tests schedule on.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.cluster import Cluster, wait_for


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, waiting for a parent that does not reap it, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@dataclass(frozen=True)
class Snapshot:
    """What it takes to start a component again."""

    argv: list[str]
    env: dict[str, str]
    cwd: str


class Component:
    """One control-plane process (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok)."""

    def __init__(self, cluster: Cluster, name: str) -> None:
        if cluster.work_dir is None:
            raise RuntimeError("fault injection needs the local control plane (SAM_TEST_KUBECONFIG is set)")
        self.cluster = cluster
        self.name = name
        self.pid_file = cluster.work_dir / "pids" / f"{name}.pid"
        self.log_file = cluster.work_dir / "logs" / f"{name}.log"
        self.snapshot = self._snapshot()

    @property
    def pid(self) -> int:
        return int(self.pid_file.read_text().strip())

    @property
    def running(self) -> bool:
        return _alive(self.pid)

    def _snapshot(self) -> Snapshot:
        proc = Path(f"/proc/{self.pid}")
        argv = [a.decode() for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
        env = dict(
            entry.decode().split("=", 1) for entry in (proc / "environ").read_bytes().split(b"\0") if b"=" in entry
        )
        return Snapshot(argv=argv, env=env, cwd=str((proc / "cwd").readlink()))

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> None:
        """Signal the process and wait until it is gone (SIGKILL after ``timeout``)."""
        pid = self.pid
        if not _alive(pid):
            return
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not _alive(pid), 10, interval=0.05, what=f"{self.name} ({pid}) to die")

    def start(self) -> int:
        """Start the component again, detached (its parent exits at once, as with cluster-up.sh's ``nohup &``)."""
        if self.running:
            raise RuntimeError(f"{self.name} is still running as {self.pid}")
        launcher = 'nohup "$@" >>"$LOG" 2>&1 </dev/null & echo $!'
        out = subprocess.run(
            ["bash", "-c", launcher, "launch", *self.snapshot.argv],
            env={**self.snapshot.env, "LOG": str(self.log_file)},
            cwd=self.snapshot.cwd,
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
            start_new_session=True,
        )
        pid = int(out.stdout.strip())
        self.pid_file.write_text(f"{pid}\n")
        # $! is the forked shell, which execs nohup, which execs the component: until then its cmdline is bash's.
        cmdline = Path(f"/proc/{pid}/cmdline")
        wait_for(
            lambda: cmdline.read_bytes().split(b"\0")[0].decode() == self.snapshot.argv[0],
            10,
            interval=0.02,
            what=f"{self.name} ({pid}) to exec",
        )
        return pid

    def ensure_running(self) -> None:
        """For ``finally`` blocks: start the component again if a test left it stopped."""
        if not self.running:
            self.start()


def api_ready(cluster: Cluster) -> bool:
    """The API server answers /readyz (which includes its etcd check)."""
    return cluster.kubectl("get", "--raw=/readyz", check=False, timeout=10).returncode == 0


def wait_api_ready(cluster: Cluster, timeout: float = 120) -> float:
    """Wait until the API server is ready; return the seconds it took."""
    started = time.monotonic()
    wait_for(lambda: api_ready(cluster), timeout, interval=0.25, what="kube-apiserver /readyz")
    return time.monotonic() - started


@contextmanager
def stopped(cluster: Cluster, name: str, sig: signal.Signals = signal.SIGTERM) -> Iterator[Component]:
    """Stop a component for the body of the ``with``; it is started again (and the API awaited) on exit,
    also when the body fails, so that later tests of the session find the cluster whole."""
    component = Component(cluster, name)
    component.stop(sig)
    try:
        yield component
    finally:
        component.ensure_running()
        wait_api_ready(cluster)


def restart(cluster: Cluster, name: str, sig: signal.Signals = signal.SIGTERM) -> Component:
    """Stop a component and start it again at once."""
    with stopped(cluster, name, sig) as component:
        pass
    return component


def kwok_gpu_node(name: str, gpus: int, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A fake GPU node kwok manages (same shape as hack/cluster/nodes.yaml)."""
    alloc = {"cpu": "32", "memory": "128Gi", "ephemeral-storage": "1Ti", "pods": "110", "nvidia.com/gpu": str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": name,
                "type": "kwok",
                "nvidia.com/gpu.present": "true",
                **(labels or {}),
            },
        },
        "status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": "localhost"}],
            "capacity": alloc,
            "allocatable": alloc,
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "v1.34.4"},
        },
    }


def node_ready(cluster: Cluster, name: str) -> bool:
    node = cluster.get_json("node", name)
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", []))


class BlackholeProxy:
    """A loopback TCP proxy in front of the API server that can black-hole the connections it carries.

    ``blackhole()`` silently drops every byte on the connections open at that moment (both directions), the
    sockets staying open: what a client sees when the far end vanishes without a FIN or RST (a node or load
    balancer gone, a network partition). Connections made afterwards are forwarded normally, so a client that
    gives up on a dead connection and dials again recovers; one without timeouts waits forever.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[_ProxiedConnection] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="blackhole-proxy", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                continue
            conn = _ProxiedConnection(client, upstream)
            with self._lock:
                self._open.append(conn)
            conn.start()

    def blackhole(self) -> int:
        """Drop all traffic on the connections open now; return how many."""
        with self._lock:
            for conn in self._open:
                conn.dropping = True
            count = len(self._open)
            self._open = []
        return count

    def kubeconfig(self, original: Path, out: Path) -> Path:
        """A copy of ``original`` whose server is this proxy (the serving cert covers 127.0.0.1)."""
        config = yaml.safe_load(original.read_text())
        for entry in config["clusters"]:
            entry["cluster"]["server"] = f"https://127.0.0.1:{self.port}"
        out.write_text(yaml.safe_dump(config))
        return out

    def close(self) -> None:
        self._closed.set()
        self.listener.close()
        with self._lock:
            for conn in self._open:
                conn.close()


class _ProxiedConnection:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client, self.upstream = client, upstream
        self.dropping = False

    def start(self) -> None:
        for src, dst in ((self.client, self.upstream), (self.upstream, self.client)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if not self.dropping:
                    dst.sendall(data)
        except OSError:
            pass
        if not self.dropping:  # a black-holed peer never learns that the other side closed
            self.close()

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            with suppress(OSError):
                sock.close()
