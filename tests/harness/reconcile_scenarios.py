"""Reconcile scenarios, each run twice: against the in-memory fake (tests/unit/operator/test_operator_reconcile.py,
milliseconds) and against the real API server (tests/integration/operator/test_reconcile_contract.py), so that what
the fast tests prove holds on a real cluster and the fake cannot drift from it.

A scenario gets an :class:`Env`: a Kube whose calls are counted, a namespace of its own, and ``settle(name)``,
which waits until the cluster's own controllers have reported on SamModel ``name``'s Deployment (a no-op on the
fake, where nothing runs besides the operator).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sam_operator.ports import PortBook, status_port
from sam_operator.reconcile import Reconciler
from sam_operator.settings import OperatorSettings
from sam_operator.store import Key

from harness.fake_kube import WRITE_VERBS
from harness.operator import sammodel

__all__ = ["SCENARIOS", "Env"]


@dataclass
class Env:
    kube: Any  # MemoryKube, or CountingKube around the real Kube
    namespace: str
    settle: Callable[[str], None] = lambda name: None
    settings: OperatorSettings = field(
        default_factory=lambda: OperatorSettings(direct_port_base=41000, direct_port_range_size=500)
    )

    def reconciler(self, ports: PortBook | None = None, requeue: Callable[[Key], None] | None = None) -> Reconciler:
        """A reconciler that reads with GETs (no informers), like one whose kinds are not watched."""
        return Reconciler(self.kube, self.settings, ports=ports, requeue=requeue or (lambda key: None))

    def create(self, name: str, **spec: Any) -> dict[str, Any]:
        body = sammodel(name, **spec)
        body["metadata"]["namespace"] = self.namespace
        stored: dict[str, Any] = self.kube.apply(body)
        return stored

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        api_version = {"SamModel": "samoperator.io/v1alpha1", "NetworkPolicy": "networking.k8s.io/v1"}[kind]
        found: dict[str, Any] | None = self.kube.get(api_version, kind, self.namespace, name)
        return found

    def writes(self) -> int:
        return sum(self.kube.calls[verb] for verb in WRITE_VERBS)


def reconciling_twice_writes_nothing_the_second_time(env: Env) -> None:
    env.create("idem", replicas=0)
    reconciler = env.reconciler()
    first = reconciler.reconcile(env.namespace, "idem")
    assert first is not None and first.status_written
    assert {"Deployment/sam-idem", "Service/sam-idem"} <= set(first.applied)
    env.settle("idem")
    # On a real cluster the Deployment controller has reported meanwhile: one status write may follow, no apply.
    catch_up = reconciler.reconcile(env.namespace, "idem")
    assert catch_up is not None and catch_up.applied == [] and catch_up.deleted == []
    before = env.writes()
    again = reconciler.reconcile(env.namespace, "idem")
    assert again is not None and (again.applied, again.deleted, again.status_written) == ([], [], False)
    assert env.writes() == before


def children_no_longer_desired_are_pruned(env: Env) -> None:
    env.create("prune", replicas=0, networkPolicy={"enabled": True})
    reconciler = env.reconciler()
    reconciler.reconcile(env.namespace, "prune")
    assert env.get("NetworkPolicy", "sam-prune") is not None
    env.create("prune", replicas=0, networkPolicy={"enabled": False})  # the spec changes
    result = reconciler.reconcile(env.namespace, "prune")
    assert result is not None and result.deleted == ["NetworkPolicy/sam-prune"]
    assert env.get("NetworkPolicy", "sam-prune") is None
    again = reconciler.reconcile(env.namespace, "prune")
    assert again is not None and again.deleted == []


def a_contested_port_stays_with_the_senior_sammodel(env: Env) -> None:
    for name in ("p-older", "p-younger"):  # same creation second on a real cluster: the name decides, "o" < "y"
        env.create(name, replicas=0)
    reconciler = env.reconciler()
    reconciler.reconcile(env.namespace, "p-older")
    port = status_port(env.get("SamModel", "p-older"))
    assert port is not None
    # A foreign write (another operator, an older version) gives the junior the same port.
    env.kube.patch_status(
        "samoperator.io", "v1alpha1", "sammodels", env.namespace, "p-younger", {"cvat": {"httpPort": port}}
    )
    ports, requeued = PortBook(), []
    for name in ("p-older", "p-younger"):
        body = env.get("SamModel", name)
        assert body is not None
        ports.observe((env.namespace, name), body)
    contested = env.reconciler(ports=ports, requeue=requeued.append)
    contested.reconcile(env.namespace, "p-older")
    assert status_port(env.get("SamModel", "p-older")) == port
    assert requeued == [(env.namespace, "p-younger")]  # the senior's pass tells the junior to move
    contested.reconcile(env.namespace, "p-younger")
    moved = status_port(env.get("SamModel", "p-younger"))
    assert moved is not None and moved != port
    assert 41000 <= moved < 41500
    assert status_port(env.get("SamModel", "p-older")) == port


def the_api_semantics_the_reconciler_relies_on(env: Env) -> None:
    """What ``MemoryKube`` promises (its docstring), checked where it matters most: on the real server."""
    created = env.create("api", replicas=0)
    meta = created["metadata"]
    assert meta["uid"] and meta["creationTimestamp"] and meta["generation"] == 1 and "status" not in created
    same = env.create("api", replicas=0)
    assert same["metadata"]["resourceVersion"] == meta["resourceVersion"]  # an apply that changes nothing
    changed = env.create("api", replicas=1)
    assert changed["metadata"]["generation"] == 2 and changed["metadata"]["resourceVersion"] != meta["resourceVersion"]
    group = ("samoperator.io", "v1alpha1", "sammodels", env.namespace, "api")
    patched = env.kube.patch_status(*group, {"replicas": 1, "endpoint": "http://x"})
    assert patched["status"] == {"replicas": 1, "endpoint": "http://x"}
    patched = env.kube.patch_status(*group, {"endpoint": None, "readyReplicas": 0})  # merge patch: null removes
    assert patched["status"] == {"replicas": 1, "readyReplicas": 0}
    assert env.create("api", replicas=1)["status"] == patched["status"]  # an apply leaves status alone
    assert env.kube.list("samoperator.io/v1alpha1", "SamModel", env.namespace, label_selector="team=none") == []
    assert [o["metadata"]["name"] for o in env.kube.list("samoperator.io/v1alpha1", "SamModel", env.namespace)] == [
        "api"
    ]
    env.kube.delete("samoperator.io/v1alpha1", "SamModel", env.namespace, "api")
    env.kube.delete("samoperator.io/v1alpha1", "SamModel", env.namespace, "api")  # gone already: silent
    assert env.get("SamModel", "api") is None  # no finalizer: gone at once
    assert env.kube.patch_status(*group, {"replicas": 0}) is None  # deleted while reconciling: None, no error


SCENARIOS: list[Callable[[Env], None]] = [
    the_api_semantics_the_reconciler_relies_on,
    reconciling_twice_writes_nothing_the_second_time,
    children_no_longer_desired_are_pruned,
    a_contested_port_stays_with_the_senior_sammodel,
]
