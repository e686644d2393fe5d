#!/usr/bin/env bash
# `make demo`: see hack/demo.py (DEMO_KEEP=1 leaves it running, DEMO_DIR moves its outputs, default .demo/,
# DEMO_IMAGE sends your own photo, KUBECONFIG uses an existing kwok-simulated cluster).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec .venv/bin/python hack/demo.py "$@"
