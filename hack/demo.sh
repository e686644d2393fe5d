#!/usr/bin/env bash
# The main job: start the local cluster (unless $KUBECONFIG points at one) and show it.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/versions.sh"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
if [[ -z ${KUBECONFIG:-} ]]; then
  step "Starting the local Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)"
  bash "$HERE/cluster-up.sh"
  export KUBECONFIG=${SAM_CLUSTER_DIR:-$HOME/.cache/sam-operator/cluster}/kubeconfig
fi
K="$SAM_K8S_BIN/kubectl"
step "Server version"
"$K" version
step "Nodes and their GPU capacity"
"$K" get nodes -o custom-columns='NAME:.metadata.name,STATUS:.status.conditions[?(@.type=="Ready")].status,GPUS:.status.allocatable.nvidia\.com/gpu,GPU-MODEL:.metadata.labels.nvidia\.com/gpu\.product'
