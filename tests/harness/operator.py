"""The operator as a process (exactly what its Deployment runs) and SamModel bodies for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from harness.cluster import Cluster
from harness.processes import ManagedProcess, http_get, operator_process


class RunningOperator:
    def __init__(self, cluster: Cluster, log_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.cluster = cluster
        self.log_dir = log_dir
        self.extra_env = extra_env or {}
        self.generation = 0
        self.proc: ManagedProcess | None = None
        self.metrics_port = 0

    def start(self) -> RunningOperator:
        self.generation += 1
        self.proc, self.metrics_port, health = operator_process(
            self.cluster.kubeconfig, self.log_dir, name=f"operator-{self.generation}", extra_env=self.extra_env
        )
        self.proc.start()
        self.proc.wait_http(f"http://127.0.0.1:{health}/healthz", timeout=60)
        return self

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()

    def kill(self) -> None:
        if self.proc:
            self.proc.kill()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
        _, body = http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        total = 0.0
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def writes(self) -> float:
        return self.metric("sam_operator_writes_total")


def sammodel(name: str, **spec: Any) -> dict[str, Any]:
    """A SamModel body: ViT-tiny on CPU by default; keyword arguments override top-level spec fields."""
    base: dict[str, Any] = {
        "model": {
            "variant": "vit_tiny",
            "checkpoint": {"url": "http://127.0.0.1:9/sam_vit_tiny.pth", "sha256": "0" * 64},
        },
        "runtime": {"device": "cpu"},
        "resources": {"gpus": 0},
    }
    base.update(spec)
    return {"apiVersion": "samoperator.io/v1alpha1", "kind": "SamModel", "metadata": {"name": name}, "spec": base}
