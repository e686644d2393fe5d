"""The real-pods suite's vocabulary: the kind cluster, the chart release, the in-cluster checkpoint server and
tiny SamModels (tests/kind/conftest.py makes the fixtures of them)."""

from __future__ import annotations

import subprocess
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.cluster import REPO, Cluster
from harness.helm import CHART
from harness.helm import helm as run_helm
from harness.kind import ready_pods
from harness.operator import sammodel
from harness.sam import wait_condition

RELEASE = "sam"
ENCODER_SELECTOR = "app.kubernetes.io/component=encoder,app.kubernetes.io/instance={}"
TINY_FILE = "sam_vit_tiny.pth"


@dataclass
class Kind:
    cluster: Cluster
    name: str  # the kind cluster's name; its node container is <name>-control-plane

    @property
    def node(self) -> str:
        return f"{self.name}-control-plane"


@dataclass
class Release:
    namespace: str
    gateway_service: str
    operator_selector: str
    gateway_selector: str


@dataclass
class Checkpoint:
    url: str  # in-cluster URL the fetch init containers download from
    sha256: str
    path: Path  # the same bytes on this machine, for the PyTorch reference


def restricted_namespace(cluster: Cluster, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                    "samoperator.io/test": "true",
                },
            },
        }
    )
    return name


def helm(cluster: Cluster, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """helm against the kind cluster (long default timeout: images are pulled from the node's store)."""
    return run_helm(*args, cluster=cluster, timeout=timeout)


def upgrade_release(cluster: Cluster, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`helm upgrade` of the test release with its values kept (`--reuse-values`) and `args` on top, waiting for
    the rollout (5 minutes)."""
    return helm(
        cluster, "upgrade", RELEASE, str(CHART), "-n", namespace, "--reuse-values", *args, "--wait", "--timeout", "5m"
    )


def checkpoint_server_manifests(image: str) -> list[dict[str, Any]]:
    """hack/kind/checkpoint-server.yaml (the demo applies the same): the tiny checkpoint served in the cluster."""
    text = (REPO / "hack" / "kind" / "checkpoint-server.yaml").read_text().replace("ENCODER_IMAGE", image)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def encoder_image() -> str:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    return f"ghcr.io/sam-operator/sam-inference:{version}"


def tiny_sammodel(
    name: str,
    checkpoint: Checkpoint,
    mode: str,
    replicas: int,
    *,
    sha256: str | None = None,
    memory_limit: str = "2Gi",
    memory_request: str = "256Mi",
) -> dict[str, Any]:
    return sammodel(
        name,
        model={"variant": "vit_tiny", "checkpoint": {"url": checkpoint.url, "sha256": sha256 or checkpoint.sha256}},
        # float32: the reference path, which the suite compares with SamPredictor (the faster defaults are held
        # to their own fidelity bounds in tests/unit/inference).
        runtime={"device": "cpu", "maxBatchSize": 2, "precision": "float32"},
        # Small requests: every encoder of the suite fits on the one 2-core node.
        resources={"gpus": 0, "requests": {"cpu": "50m", "memory": memory_request}, "limits": {"memory": memory_limit}},
        replicas=replicas,
        cvat={"mode": mode, "displayName": f"Tiny SAM ({mode}, real pods)"},
    )


@dataclass
class Model:
    name: str
    namespace: str
    function: str
    selector: str


def deploy(cluster: Cluster, namespace: str, checkpoint: Checkpoint, name: str, mode: str, replicas: int) -> Model:
    cluster.apply(tiny_sammodel(name, checkpoint, mode, replicas), namespace)
    selector = ENCODER_SELECTOR.format(name)
    sam = wait_condition(cluster, namespace, name, "Ready", "True", timeout=600)
    ready_pods(cluster, namespace, selector, replicas, timeout=300)
    return Model(name, namespace, sam["status"]["cvat"]["functionName"], selector)
