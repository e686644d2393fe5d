"""Direct-mode ports (status.cvat.httpPort) end up distinct when many SamModels are reconciled at once.

An operator starting on SamModels that have no port yet reconciles them concurrently; each picks a free port
from what the others had *before*, so two may pick the same one. A shared port would make the gateway route one
function's direct-mode traffic to another model. They must converge on distinct ports, and then keep them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
from harness.cluster import Cluster, wait_for
from harness.operator import RunningOperator, sammodel
from harness.sam import get_sam

pytestmark = pytest.mark.cluster


def test_sammodels_reconciled_at_once_converge_on_distinct_direct_ports(
    cluster: Cluster, namespace: str, start_operator: Callable[..., RunningOperator]
) -> None:
    names = [f"p{i}" for i in range(10)]
    cluster.apply([sammodel(n) for n in names], namespace)  # before the operator: its first list has them all
    # A range of 12 ports for 10 models: their hash-derived first choices collide with near certainty.
    op = start_operator(
        namespace, resync_s=2, SAM_OPERATOR_DIRECT_PORT_BASE="40000", SAM_OPERATOR_DIRECT_PORT_RANGE_SIZE="12"
    )
    seen: list[dict[str, int]] = []

    def ports() -> dict[str, int]:
        return {n: (get_sam(cluster, namespace, n)["status"].get("cvat") or {}).get("httpPort") for n in names}

    def distinct() -> dict[str, int] | None:
        got = ports()
        seen.append(got)
        return got if all(got.values()) and len(set(got.values())) == len(names) else None

    try:
        assigned: dict[str, int] = wait_for(distinct, 60, interval=0.5, what="distinct direct-mode ports")
    except AssertionError:
        raise AssertionError(f"ports never became distinct: {seen[-1]}") from None
    assert all(40000 <= p < 40012 for p in assigned.values()), assigned
    # Settled: two more resync rounds move nothing.
    before = op.metric("sam_operator_reconcile_total", result="success")
    wait_for(
        lambda: op.metric("sam_operator_reconcile_total", result="success") >= before + 2 * len(names),
        30,
        what="two resync rounds",
    )
    assert ports() == assigned
    first_full = next((s for s in seen if all(s.values())), {})
    shared = {p: c for p, c in Counter(first_full.values()).items() if c > 1}
    print(
        f"\n[faults] {len(names)} SamModels reconciled at once: first ports {first_full} (shared: {shared}); "
        f"converged on {assigned}"
    )


def test_a_direct_port_shared_by_two_sammodels_is_given_up_by_the_younger_one(
    cluster: Cluster, namespace: str, start_operator: Callable[..., RunningOperator]
) -> None:
    """The outcome of such a race (or of an older operator) is repaired: the older SamModel keeps the port."""
    # Created in this order; within the same second (creationTimestamp's resolution) the name decides, and
    # "older" < "younger" as well.
    cluster.apply(sammodel("older"), namespace)
    cluster.apply(sammodel("younger"), namespace)
    for name in ("older", "younger"):
        cluster.custom().patch_namespaced_custom_object_status(
            "samoperator.io", "v1alpha1", namespace, "sammodels", name, {"status": {"cvat": {"httpPort": 40100}}}
        )
    start_operator(namespace, SAM_OPERATOR_DIRECT_PORT_BASE="40100", SAM_OPERATOR_DIRECT_PORT_RANGE_SIZE="50")

    def port(name: str) -> int | None:
        value = (get_sam(cluster, namespace, name)["status"].get("cvat") or {}).get("httpPort")
        return value if isinstance(value, int) else None

    wait_for(lambda: (p := port("younger")) is not None and p != 40100, 60, what="the younger SamModel to move")
    assert port("older") == 40100
    assert 40100 < (port("younger") or 0) < 40150
