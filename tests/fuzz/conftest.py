"""Fuzz suite plumbing: print how many cases each property ran (and how they ended)."""

from __future__ import annotations

import pytest
from fuzz._cases import CASES, summary


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    # tests/security's conftest prints the same table when it was collected too; print it once.
    if not CASES or config.pluginmanager.hasplugin("fuzz-summary-printed"):
        return
    config.pluginmanager.register(object(), "fuzz-summary-printed")
    terminalreporter.section("fuzz/property cases run")
    for line in summary():
        terminalreporter.write_line(line)
