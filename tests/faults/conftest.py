"""Fixtures for the fault tests: the CRD, and operators started per test (each test picks its own settings)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from harness.cluster import REPO, Cluster
from harness.operator import RunningOperator


@pytest.fixture(scope="session")
def fault_crd(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds" / "sammodels.yaml"))
    cluster.kubectl("wait", "--for=condition=Established", "crd/sammodels.samoperator.io", "--timeout=60s")


@pytest.fixture
def start_operator(cluster: Cluster, fault_crd: None, tmp_path: Path) -> Iterator[Callable[..., RunningOperator]]:
    """Start an operator watching only ``namespace``; every operator started is stopped after the test."""
    started: list[RunningOperator] = []

    def start(namespace: str, resync_s: float = 10, **env: str) -> RunningOperator:
        extra = {
            "SAM_OPERATOR_NAMESPACES": f'["{namespace}"]',
            "SAM_OPERATOR_RESYNC_INTERVAL_SECONDS": str(resync_s),
            **env,
        }
        op = RunningOperator(cluster, tmp_path / f"operator-{len(started)}", extra_env=extra).start()
        started.append(op)
        return op

    try:
        yield start
    finally:
        for op in started:
            op.stop()
