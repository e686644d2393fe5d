#!/usr/bin/env bash
# `make demo-down`: stops what either demo started: the kind demo's cluster (hack/kind-down.sh) and the kwok demo's
# processes and control plane (pid files in ${DEMO_DIR:-.demo}/pids).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
.venv/bin/python hack/demo_kind.py down
exec .venv/bin/python hack/demo.py down
