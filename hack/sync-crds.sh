#!/usr/bin/env bash
# Copies the SamModel CRD (crds/sammodels.yaml, the source of truth) into the chart, byte for byte.
# tests/contract/test_chart.py fails when the copy drifts; `bash hack/sync-crds.sh --check` only compares.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
src=crds/sammodels.yaml
dst=charts/sam-operator/crds/sammodels.yaml
if [[ ${1:-} == --check ]]; then
  cmp -s "$src" "$dst" || { echo "$dst differs from $src: run hack/sync-crds.sh" >&2; exit 1; }
  exit 0
fi
mkdir -p "$(dirname "$dst")"
cp "$src" "$dst"
echo "synced $dst"
