"""The gateway as a process the tests can restart, listening on one fixed loopback port."""

from __future__ import annotations

from pathlib import Path

from harness.cluster import Cluster
from harness.processes import ManagedProcess, free_port, gateway_process


class Gateway:
    def __init__(self, cluster: Cluster, namespace: str, log_dir: Path) -> None:
        self.cluster, self.namespace, self.log_dir = cluster, namespace, log_dir
        self.port = free_port()
        self.restarts = 0
        self.proc: ManagedProcess | None = None

    def start(self) -> Gateway:
        self.proc = gateway_process(
            self.cluster.kubeconfig, self.log_dir, self.port, self.namespace, name=f"gateway-{self.restarts}"
        ).start()
        self.proc.wait_http(f"http://127.0.0.1:{self.port}/readyz", timeout=60)
        return self

    def restart(self) -> None:
        self.stop()
        self.restarts += 1
        self.start()

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()
