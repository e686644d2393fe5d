"""End-to-end fixtures: CRD, operator, gateway and the encoder pods' real processes on the local cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness.cluster import REPO, Cluster
from harness.gateway import Gateway
from harness.model_server import CheckpointServer, serve_tiny_checkpoint
from harness.operator import RunningOperator
from harness.processes import free_port_block


@pytest.fixture(scope="session")
def checkpoint_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CheckpointServer]:
    server = serve_tiny_checkpoint(tmp_path_factory.mktemp("checkpoints"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def e2e_namespace(cluster: Cluster) -> Iterator[str]:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds" / "sammodels.yaml"))
    cluster.kubectl("wait", "--for=condition=Established", "crd/sammodels.samoperator.io", "--timeout=60s")
    with cluster.namespace(prefix="e2e") as ns:
        yield ns


@pytest.fixture(scope="module")
def e2e_operator(
    cluster: Cluster, e2e_namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningOperator]:
    # Direct-mode ports from a free region below the ephemeral ports, so parallel runs, a demo or an outgoing
    # connection on this machine don't hold them first.
    env = {
        "SAM_OPERATOR_DIRECT_PORT_BASE": str(free_port_block(200)),
        "SAM_OPERATOR_DIRECT_PORT_RANGE_SIZE": "200",
        "SAM_OPERATOR_NAMESPACES": f'["{e2e_namespace}"]',
    }
    op = RunningOperator(cluster, tmp_path_factory.mktemp("e2e-operator"), extra_env=env).start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture(scope="module")
def gateway(
    cluster: Cluster, e2e_namespace: str, e2e_operator: RunningOperator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    gw = Gateway(cluster, e2e_namespace, tmp_path_factory.mktemp("gateway")).start()
    try:
        yield gw
    finally:
        gw.stop()
