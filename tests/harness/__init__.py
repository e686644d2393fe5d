"""Test harness: the local Kubernetes cluster, per-test namespaces, and processes standing in for kwok pods."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing_tool(message: str) -> NoReturn:
    """A required tool is absent: skip locally (``make test-unit`` on a bare machine), but fail in CI, where
    hack/setup.sh installs every tool, so that a broken setup can never pass as a green run of skips."""
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI must have it)")
    pytest.skip(message)
