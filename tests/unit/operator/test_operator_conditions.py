"""conditions.set_condition: metav1.Condition semantics without mutating the input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sam_operator.conditions import READY, find_condition, format_time, set_condition

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def test_new_condition_gets_now() -> None:
    (cond,) = set_condition([], READY, "False", "PodsPending", "waiting", now=T0, observed_generation=1)
    assert cond == {
        "type": "Ready",
        "status": "False",
        "reason": "PodsPending",
        "message": "waiting",
        "lastTransitionTime": "2026-01-02T03:04:05Z",
        "observedGeneration": 1,
    }


def test_same_status_keeps_the_transition_time_even_if_reason_changes() -> None:
    first = set_condition([], READY, "False", "PodsPending", "a", now=T0)
    second = set_condition(first, READY, "False", "InsufficientGPU", "b", now=T1)
    cond = find_condition(second, READY)
    assert cond is not None
    assert cond["lastTransitionTime"] == "2026-01-02T03:04:05Z" and cond["reason"] == "InsufficientGPU"


def test_status_change_moves_the_transition_time() -> None:
    first = set_condition([], READY, "False", "PodsPending", "a", now=T0)
    second = set_condition(first, READY, "True", "AllReplicasReady", "b", now=T1)
    assert second[0]["lastTransitionTime"] == "2026-01-02T03:09:05Z"


def test_input_is_not_modified_and_others_keep_their_order() -> None:
    existing = [{"type": "Other", "status": "True"}, {"type": "Ready", "status": "False", "lastTransitionTime": "x"}]
    snapshot = [dict(c) for c in existing]
    result = set_condition(existing, READY, "True", "R", "m", now=T0)
    assert existing == snapshot
    assert [c["type"] for c in result] == ["Other", "Ready"]


def test_format_time_converts_to_utc() -> None:
    from datetime import timezone

    assert format_time(datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))) == "2026-01-01T10:00:00Z"
