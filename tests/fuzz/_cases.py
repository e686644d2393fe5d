"""Case counting and example budgets shared by the property/fuzz tests (tests/fuzz, tests/security).

Every property records each generated case with :func:`count` (and what became of it), and the fuzz
``conftest`` prints the totals at the end of the run. ``SAM_FUZZ_SCALE`` multiplies every example budget
(default 1: a few hundred per property, fast enough for CI on 2 cores; e.g. ``SAM_FUZZ_SCALE=20`` for a
long local run).
"""

from __future__ import annotations

import os
from collections import Counter

from hypothesis import HealthCheck, settings

CASES: Counter[tuple[str, str]] = Counter()


def scale() -> float:
    try:
        return max(float(os.environ.get("SAM_FUZZ_SCALE", "1")), 0.01)
    except ValueError:
        return 1.0


def examples(n: int) -> int:
    """An example budget of ``n`` scaled by ``SAM_FUZZ_SCALE`` (at least 1)."""
    return max(1, int(n * scale()))


def fuzz_settings(n: int) -> settings:
    """Hypothesis settings for a property with a budget of ``n`` examples: no deadline (shared CI cores)."""
    return settings(
        max_examples=examples(n),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        derandomize=os.environ.get("SAM_FUZZ_RANDOM") != "1",
    )


def count(prop: str, outcome: str = "ok") -> None:
    """Record one case of property ``prop`` ending in ``outcome`` (e.g. ``ok``, ``400``, ``413``)."""
    CASES[(prop, outcome)] += 1


def summary() -> list[str]:
    """Lines of the per-property case counts, then the total."""
    per_prop: dict[str, Counter[str]] = {}
    for (prop, outcome), n in CASES.items():
        per_prop.setdefault(prop, Counter())[outcome] += n
    lines = []
    for prop in sorted(per_prop):
        outcomes = per_prop[prop]
        detail = ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items()))
        lines.append(f"{prop:<48} {sum(outcomes.values()):>6}  ({detail})")
    lines.append(f"{'TOTAL':<48} {sum(CASES.values()):>6}")
    return lines
