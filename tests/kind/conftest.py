"""Fixtures of the real-pods suite: a kind cluster (hack/kind-up.sh), the chart installed with the images built
here, an in-cluster checkpoint server, and tiny SamModels whose encoder pods are real containers.

Set SAM_TEST_KIND_KUBECONFIG (and SAM_TEST_KIND_CLUSTER, its kind name) to run against a cluster that is already
up (`make kind-up`); otherwise the session creates its own cluster and deletes it afterwards.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.cluster import Cluster, k8s_bin_dir
from harness.helm import CHART
from harness.kind import port_forward, ready_pods, start_kind_cluster, stop_kind_cluster
from harness.kind_release import (
    RELEASE,
    TINY_FILE,
    Checkpoint,
    Kind,
    Model,
    Release,
    checkpoint_server_manifests,
    deploy,
    encoder_image,
    helm,
    restricted_namespace,
)


@pytest.fixture(scope="session")
def kind(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kind]:
    external = os.environ.get("SAM_TEST_KIND_KUBECONFIG")
    if external:
        cluster = Cluster(kubeconfig=Path(external), bin_dir=k8s_bin_dir())
        yield Kind(cluster, os.environ.get("SAM_TEST_KIND_CLUSTER", "sam-kind"))
        cluster.close()
        return
    name = f"sam-test-{uuid.uuid4().hex[:6]}"
    state = tmp_path_factory.mktemp("kind")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    # kind-up's progress lines (images, node image, create, load: where the time goes) reach the terminal.
    with capture.global_and_fixture_disabled():
        print(f"\n[kind suite] creating kind cluster {name} (hack/kind-up.sh)", flush=True)
        cluster = start_kind_cluster(name, state)
    try:
        yield Kind(cluster, name)
    finally:
        cluster.close()
        with capture.global_and_fixture_disabled():
            stop_kind_cluster(name, state)


@pytest.fixture(scope="session")
def release(kind: Kind) -> Iterator[Release]:
    """The chart, installed as a user would, with the images hack/build-images.sh built (never pulled)."""
    cluster = kind.cluster
    namespace = restricted_namespace(cluster, "sam-system")
    helm(
        cluster,
        "install",
        RELEASE,
        str(CHART),
        "-n",
        namespace,
        "--wait",
        "--timeout",
        "5m",
        "--set",
        "image.pullPolicy=Never",
        "--set",
        "operator.encoderImage.pullPolicy=Never",
        "--set",
        "operator.logFormat=plain",
    )
    yield Release(
        namespace,
        f"{RELEASE}-sam-operator-gateway",
        f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=operator",
        f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=gateway",
    )
    subprocess.run(
        [
            cluster.helm_path,
            "--kubeconfig",
            str(cluster.kubeconfig),
            "uninstall",
            RELEASE,
            "-n",
            namespace,
            "--wait",
            "--timeout",
            "2m",
        ],
        capture_output=True,
        timeout=180,
    )
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="session")
def models_namespace(kind: Kind, release: Release) -> Iterator[str]:
    namespace = restricted_namespace(kind.cluster, "models")
    yield namespace
    kind.cluster.kubectl(
        "delete", "sammodels", "--all", "-n", namespace, "--wait=true", "--timeout=120s", check=False, timeout=180
    )
    kind.cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="session")
def checkpoint(kind: Kind, models_namespace: str, tmp_path_factory: pytest.TempPathFactory) -> Checkpoint:
    cluster = kind.cluster
    cluster.apply(checkpoint_server_manifests(encoder_image()), models_namespace)
    ready_pods(cluster, models_namespace, "app=checkpoints", 1, timeout=300)
    # The bytes as the cluster serves them (through the Service, port-forwarded), hashed here.
    with (
        port_forward(cluster, models_namespace, "svc/checkpoints", 8000) as ports,
        urllib.request.urlopen(f"http://127.0.0.1:{ports[8000]}/{TINY_FILE}", timeout=60) as response,
    ):
        data = response.read()
    path = tmp_path_factory.mktemp("checkpoint") / TINY_FILE
    path.write_bytes(data)
    url = f"http://checkpoints.{models_namespace}.svc.cluster.local:8000/{TINY_FILE}"
    return Checkpoint(url=url, sha256=hashlib.sha256(data).hexdigest(), path=path)


@pytest.fixture(scope="session")
def embedding_model(kind: Kind, models_namespace: str, checkpoint: Checkpoint) -> Model:
    return deploy(kind.cluster, models_namespace, checkpoint, "tiny-embed", "embedding", replicas=2)


@pytest.fixture(scope="session")
def masks_model(kind: Kind, models_namespace: str, checkpoint: Checkpoint) -> Model:
    return deploy(kind.cluster, models_namespace, checkpoint, "tiny-masks", "masks", replicas=1)


@pytest.fixture
def gateway_port(kind: Kind, release: Release) -> Iterator[int]:
    """The gateway's Service, port-forwarded to 127.0.0.1: what CVAT_NUCLIO_HOST:PORT points at."""
    with port_forward(kind.cluster, release.namespace, f"svc/{release.gateway_service}", 8070) as ports:
        yield ports[8070]
