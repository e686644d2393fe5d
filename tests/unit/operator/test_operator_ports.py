"""ports: the direct-mode port policy (pure) — stable per SamModel, kept while valid, moved only on conflict."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from sam_operator.ports import allocate_http_port, choose_http_port


def test_port_is_stable_for_a_key_and_skips_taken_ports() -> None:
    first = allocate_http_port("ns/a", set(), 32768, 1000)
    assert first is not None and 32768 <= first < 33768
    assert allocate_http_port("ns/a", set(), 32768, 1000) == first
    second = allocate_http_port("ns/a", {first}, 32768, 1000)
    assert second is not None and second != first


def test_port_allocation_wraps_and_reports_a_full_range() -> None:
    assert allocate_http_port("k", {10, 11}, 10, 3) == 12
    assert allocate_http_port("k", {10, 11, 12}, 10, 3) is None
    assert allocate_http_port("k", set(), 10, 0) is None


@given(st.text(min_size=1, max_size=40), st.sets(st.integers(100, 119), max_size=19))
def test_allocated_port_is_free_and_in_range(key: str, taken: set[int]) -> None:
    port = allocate_http_port(key, taken, 100, 20)
    assert port is not None and 100 <= port < 120 and port not in taken


def test_a_sammodel_keeps_its_port_while_it_is_in_range_and_nobody_senior_claims_it() -> None:
    kept = choose_http_port("ns/a", enabled=True, kept=32800, taken=set(), base=32768, size=1000)
    assert kept == 32800
    moved = choose_http_port("ns/a", enabled=True, kept=32800, taken={32800}, base=32768, size=1000)
    assert moved is not None and moved != 32800 and 32768 <= moved < 33768
    assert moved == allocate_http_port("ns/a", {32800}, 32768, 1000)


def test_a_port_outside_the_range_is_replaced_by_the_allocated_one() -> None:
    fresh = allocate_http_port("ns/a", set(), 32768, 10)
    assert choose_http_port("ns/a", enabled=True, kept=40000, taken=set(), base=32768, size=10) == fresh
    assert choose_http_port("ns/a", enabled=True, kept=None, taken=set(), base=32768, size=10) == fresh


def test_no_port_when_cvat_is_disabled_or_the_range_is_full() -> None:
    assert choose_http_port("ns/a", enabled=False, kept=32800, taken=set(), base=32768, size=1000) is None
    assert choose_http_port("ns/a", enabled=True, kept=None, taken={10, 11}, base=10, size=2) is None
