"""The reconcile scenarios of tests/unit/operator/test_operator_reconcile.py, on the real API server.

The unit tests run them against ``harness.fake_kube.MemoryKube`` in milliseconds; here the same functions drive
the real :class:`sam_operator.kube.Kube`, so a behaviour the fake has and the server lacks fails here.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from harness.cluster import Cluster, wait_for
from harness.fake_kube import CountingKube
from harness.reconcile_scenarios import SCENARIOS, Env
from sam_operator.kube import Kube, load_api_client

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def kube(cluster: Cluster, sammodel_crd: None) -> Kube:
    return Kube(load_api_client(str(cluster.kubeconfig)))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_scenario_on_the_real_api_server(
    scenario: Callable[[Env], None], cluster: Cluster, namespace: str, kube: Kube
) -> None:
    def settle(name: str) -> None:
        def reported() -> bool:
            deployment = cluster.apps().read_namespaced_deployment(f"sam-{name}", namespace)
            return (deployment.status.observed_generation or 0) >= deployment.metadata.generation

        wait_for(reported, 30, what=f"the Deployment controller to report on sam-{name}")

    scenario(Env(CountingKube(kube), namespace, settle=settle))


def test_applies_are_owned_by_the_configured_field_manager(cluster: Cluster, namespace: str, kube: Kube) -> None:
    mine = Kube(kube.api_client, field_manager="sam-operator-contract-test")
    env = Env(mine, namespace)
    stored = env.create("owned", replicas=0)
    managers = {entry["manager"] for entry in stored["metadata"]["managedFields"]}
    assert managers == {"sam-operator-contract-test"}
