#!/usr/bin/env bash
# `make demo`. On a machine that runs containers (podman works): hack/demo_kind.py, every pod a real container on
# a kind cluster. Otherwise, or with SAM_DEMO_KWOK=1: hack/demo.py, the kwok-simulated cluster whose pods' commands
# run as local processes (fast; GPU scheduling). DEMO_KEEP=1 leaves it running, DEMO_DIR moves its outputs
# (default .demo/), DEMO_IMAGE sends your own photo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ ${SAM_DEMO_KWOK:-0} != 1 ]] && CONTAINERS_CONF=hack/kind/containers.conf podman info >/dev/null 2>&1; then
  exec .venv/bin/python hack/demo_kind.py "$@"
fi
echo "[demo] podman cannot run containers here (or SAM_DEMO_KWOK=1): the kwok-simulated demo" >&2
exec .venv/bin/python hack/demo.py "$@"
