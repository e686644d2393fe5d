#!/usr/bin/env python3
"""Regenerate tests/golden/*.yaml: the children rendered for every sample in crds/samples/.

Usage: `.venv/bin/python hack/update-golden.py` (then review the diff like code). The rendering lives in
tests/harness/golden.py (the `harness` package, installed in the venv); tests/unit/operator/test_operator_render.py
renders the same way and compares byte for byte.
"""

from __future__ import annotations

from harness.cluster import REPO
from harness.golden import write_all


def main() -> int:
    for path in write_all():
        print(f"Wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
