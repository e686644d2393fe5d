#!/usr/bin/env bash
# Stops everything hack/demo.sh started.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bash "$HERE/cluster-down.sh"
