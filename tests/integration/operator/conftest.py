"""Fixtures for operator tests on the real cluster: the CRD installed, the operator running as a process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness.cluster import REPO, Cluster
from harness.operator import RunningOperator


@pytest.fixture(scope="session")
def sammodel_crd(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds" / "sammodels.yaml"))
    cluster.kubectl("wait", "--for=condition=Established", "crd/sammodels.samoperator.io", "--timeout=60s")


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster, sammodel_crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningOperator]:
    op = RunningOperator(cluster, tmp_path_factory.mktemp("operator-logs")).start()
    try:
        yield op
    finally:
        op.stop()
