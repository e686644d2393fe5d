#!/usr/bin/env bash
# The same e2e suite on a kind cluster, where Docker exists (not on the development machine here: it has no Docker,
# so this script is not run by CI; tests/ run on the local control plane instead). Creates the cluster, builds the
# operator and CPU encoder images, loads them into kind, then runs the cluster + e2e tests with SAM_TEST_KUBECONFIG.
#
#   KIND_CLUSTER  cluster name (default sam-e2e); KEEP=1 keeps the cluster afterwards
#   extra args go to pytest (default: -m "cluster or e2e")
#
# Untested here (no Docker daemon). Known gap: the harness runs encoder pods' commands as local processes once
# kwok marks them Running; on kind a real kubelet runs the encoder image instead, whose fetch init container cannot
# reach the harness's checkpoint server on the host's 127.0.0.1, so expect the SamModel-to-Ready e2e tests to need
# kwok nodes added to the kind cluster (hack/cluster/nodes.yaml + kwok's in-cluster manifests) before they pass.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "kind-e2e: $tool not found (needs Docker, kind and kubectl)" >&2; exit 1; }
done
NAME=${KIND_CLUSTER:-sam-e2e}
VERSION=$(.venv/bin/python -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')
KCFG=$(mktemp -d)/kubeconfig
cleanup() { [[ ${KEEP:-0} == 1 ]] || kind delete cluster --name "$NAME"; }
trap cleanup EXIT

kind create cluster --name "$NAME" --kubeconfig "$KCFG" --wait 120s
docker build -f operator/Dockerfile -t "ghcr.io/sam-operator/sam-operator:$VERSION" .
docker build -f inference/Dockerfile --build-arg TORCH_VARIANT=cpu -t "ghcr.io/sam-operator/sam-inference:$VERSION" .
kind load docker-image --name "$NAME" "ghcr.io/sam-operator/sam-operator:$VERSION" \
  "ghcr.io/sam-operator/sam-inference:$VERSION"

args=("$@"); [[ ${#args[@]} -gt 0 ]] || args=(-m "cluster or e2e")
SAM_TEST_KUBECONFIG=$KCFG bash hack/run-tests.sh "${args[@]}"
