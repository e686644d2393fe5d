"""The reconcile core against the in-memory fake at the kube.py boundary: milliseconds per scenario.

The shared scenarios (tests/harness/reconcile_scenarios.py) run here and against the real API server
(tests/integration/operator/test_reconcile_contract.py). The tests below them need control the real server does
not give: failures on demand, and the exact call counts.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from harness.fake_kube import MemoryKube
from harness.reconcile_scenarios import SCENARIOS, Env
from sam_operator.controller import Controller
from sam_operator.settings import OperatorSettings


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_scenario_on_the_fake(scenario: Callable[[Env], None]) -> None:
    scenario(Env(MemoryKube(), "ns"))


def test_the_second_pass_on_the_fake_makes_no_call_but_reads() -> None:
    env = Env(MemoryKube(), "ns")
    env.create("idem", replicas=0)
    reconciler = env.reconciler()
    reconciler.reconcile("ns", "idem")
    first = env.kube.calls.copy()
    reconciler.reconcile("ns", "idem")
    second = env.kube.calls - first
    assert not {"apply", "delete", "patch_status"} & set(second)
    assert set(second) <= {"get", "list", "has_api"}


def test_a_failed_reconcile_is_requeued_with_backoff_and_succeeds_later() -> None:
    kube = MemoryKube()
    env = Env(kube, "ns")
    env.create("flaky", replicas=0)
    controller = Controller(kube, OperatorSettings())  # type: ignore[arg-type]
    scheduled: list[tuple[object, float]] = []
    controller.queue.add_after = lambda key, delay: scheduled.append((key, delay))  # type: ignore[method-assign]
    kube.fail_next("apply", times=2)
    controller._reconcile_key(("ns", "flaky"))
    controller._reconcile_key(("ns", "flaky"))
    assert scheduled == [(("ns", "flaky"), 0.5), (("ns", "flaky"), 1.0)]  # retried, backing off
    assert env.get("SamModel", "flaky") is not None and kube.writes == [("apply", "SamModel", "flaky")]
    controller._reconcile_key(("ns", "flaky"))  # the API answers again: the Deployment first, then a prompt pass
    assert scheduled[2:] == [(("ns", "flaky"), 0.0)]
    controller._reconcile_key(("ns", "flaky"))
    assert scheduled[3:] == []  # succeeded: nothing retried
    status = (env.get("SamModel", "flaky") or {}).get("status") or {}
    assert status.get("observedGeneration") == 1 and ("apply", "Service", "sam-flaky") in kube.writes
    kube.fail_next("get")  # a later failure backs off from the start again: the success reset the count
    controller._reconcile_key(("ns", "flaky"))
    assert scheduled[3:] == [(("ns", "flaky"), 0.5)]
    controller.stop()
