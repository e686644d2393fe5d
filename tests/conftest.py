"""Session-wide fixtures: the real cluster (started once, lazily), per-test namespaces, test markers.

Set SAM_TEST_KUBECONFIG to run the cluster tests against an existing cluster (kind, for example) instead of
starting the local control plane.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.cluster import Cluster, k8s_bin_dir, start_local_cluster, stop_local_cluster


def pytest_configure(config: pytest.Config) -> None:
    # A SIGTERM (CI timeout, Ctrl-C in a wrapper) must still run the fixtures' teardown, so that no
    # control-plane or inference process outlives the test run.
    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _terminate)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_gpu = bool(torch.cuda.is_available())
    except Exception:
        has_gpu = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (none on this machine); runs on the device machine")
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip_gpu)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """How many generated cases each property/fuzz test ran (tests/fuzz, tests/security), when any ran."""
    from fuzz._cases import CASES, summary

    if CASES:
        terminalreporter.section("fuzz/property cases run")
        for line in summary():
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    external = os.environ.get("SAM_TEST_KUBECONFIG")
    if external:
        c = Cluster(kubeconfig=Path(external), bin_dir=k8s_bin_dir())
        os.environ["KUBECONFIG"] = external
        yield c
        c.close()
        return
    work = tmp_path_factory.mktemp("cluster")
    c = start_local_cluster(work)
    os.environ["KUBECONFIG"] = str(c.kubeconfig)
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    try:
        yield c
    finally:
        c.close()
        stop_local_cluster(work)


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    with cluster.namespace(prefix=request.node.name.replace("_", "-")[:30]) as ns:
        yield ns
