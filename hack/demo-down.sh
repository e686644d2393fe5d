#!/usr/bin/env bash
# `make demo-down`: stops exactly what hack/demo.py started (pid files in ${DEMO_DIR:-.demo}/pids) and its cluster.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec .venv/bin/python hack/demo.py down
