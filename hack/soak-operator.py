#!/usr/bin/env python3
"""Soak: the operator kill test (tests/faults/test_operator_kills.py) over many seeds and more kill points.

    .venv/bin/python hack/soak-operator.py [--seeds 5] [--first-seed 1] [--kills 40]

Each seed runs in its own pytest session (a fresh local cluster), so a failure names the seed that reproduces
it: ``SAM_FAULT_SEED=<seed> SAM_FAULT_KILLS=<kills> .venv/bin/python -m pytest -s tests/faults/test_operator_kills.py``.
Prints one line of figures per seed and a total; exits non-zero if any seed failed to converge.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST = "tests/faults/test_operator_kills.py"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5, help="how many seeds to run")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--kills", type=int, default=40, help="kill points per seed")
    args = parser.parse_args()

    total_kills, failed = 0, []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        env = {**os.environ, "SAM_FAULT_SEED": str(seed), "SAM_FAULT_KILLS": str(args.kills)}
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", TEST],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
        )
        took = time.monotonic() - started
        figures = re.search(r"\[faults\] (operator SIGKILLed at (\d+) points.*?converged [\d.]+s[^;]*)", proc.stdout)
        if proc.returncode == 0 and figures:
            total_kills += int(figures.group(2))
            print(f"seed {seed}: ok in {took:.0f}s: {figures.group(1)}", flush=True)
        else:
            failed.append(seed)
            print(f"seed {seed}: FAILED (rc {proc.returncode}) in {took:.0f}s\n{proc.stdout[-6000:]}", flush=True)
    print(
        f"soak: {args.seeds - len(failed)}/{args.seeds} seeds converged, {total_kills} kill points survived"
        + (f"; failing seeds: {failed}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
