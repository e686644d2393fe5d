"""Security suite plumbing: shares the fuzz suite's case counter (some tests here are properties too)."""

from __future__ import annotations

import pytest
from fuzz._cases import CASES, summary


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    # The fuzz conftest prints the same table when it was collected too; print it once.
    if not CASES or config.pluginmanager.hasplugin("fuzz-summary-printed"):
        return
    config.pluginmanager.register(object(), "fuzz-summary-printed")
    terminalreporter.section("fuzz/property cases run")
    for line in summary():
        terminalreporter.write_line(line)
