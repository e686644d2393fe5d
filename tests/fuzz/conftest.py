"""Fuzz suite plumbing: print how many cases each property ran (and how they ended)."""

from __future__ import annotations

import pytest
from fuzz._cases import CASES, summary


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not CASES:
        return
    terminalreporter.section("fuzz/property cases run")
    for line in summary():
        terminalreporter.write_line(line)
