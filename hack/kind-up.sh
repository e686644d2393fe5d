#!/usr/bin/env bash
# Creates a kind cluster whose pods are real containers, fully offline: kind (from its Go module, podman
# provider), the node image built here, the product images loaded into it, and kwok-managed GPU nodes beside
# the real node. Everything it changes on the host is recorded under the state folder; hack/kind-down.sh undoes
# exactly that.
#   SAM_KIND_CLUSTER   cluster name (default sam-kind)
#   SAM_KIND_STATE     state folder (default ~/.cache/sam-operator/kind/clusters/<name>): kubeconfig, pids, sysctls
#   SAM_KIND_IMAGES    product images to build and load (default "operator inference"; "" for none)
# Prints where its time goes; writes <state>/kubeconfig.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/kind/lib.sh"
KIND_LOG_TAG=kind-up
STATE=${SAM_KIND_STATE:-$SAM_KIND_CACHE/clusters/$SAM_KIND_CLUSTER}
B=$SAM_K8S_BIN
K() { "$B/kubectl" --kubeconfig "$STATE/kubeconfig" "$@"; }
t_all=$SECONDS
step() { kind_log "$1 ($((SECONDS - t_step)) s)"; t_step=$SECONDS; }
t_step=$SECONDS

for b in kind kubectl kwok helm; do
  [[ -x $B/$b ]] || { echo "missing $B/$b: run hack/build-tools.sh (make setup) first" >&2; exit 1; }
done
command -v podman >/dev/null || { echo "podman is missing: run make setup" >&2; exit 1; }
if "$B/kind" get clusters 2>/dev/null | grep -qx "$SAM_KIND_CLUSTER"; then
  echo "kind cluster $SAM_KIND_CLUSTER already exists: KUBECONFIG=$STATE/kubeconfig (hack/kind-down.sh stops it)"
  exit 0
fi
rm -rf "$STATE"; mkdir -p "$STATE"/{pids,logs}

bash "$KIND_DIR/build-node-image.sh"
step "node image $NODE_IMAGE ready"
if [[ -n ${SAM_KIND_IMAGES-operator inference} ]]; then
  SAM_IMAGES=${SAM_KIND_IMAGES-operator inference} bash "$REPO_DIR/hack/build-images.sh"
  step "product images ready"
fi

refs=(); for name in ${SAM_KIND_IMAGES-operator inference}; do refs+=("ghcr.io/sam-operator/sam-$name:$(project_version)"); done
require_disk_for_images "${refs[@]}"

# Host state the cluster changes (the kubelet's host-wide sysctls, netavark's IP forwarding, /lib/modules, the podman
# network): recorded before the first of these scripts' clusters, restored after the last (hack/kind/lib.sh).
host_state_register "$SAM_KIND_CLUSTER"
sed "s/ETCD_IMAGE_TAG/$ETCD_IMAGE_TAG/" "$KIND_DIR/cluster.yaml" >"$STATE/cluster.yaml"
quiet "$STATE/logs/kind-create.log" "$B/kind" create cluster --name "$SAM_KIND_CLUSTER" --image "$NODE_IMAGE" \
  --config "$STATE/cluster.yaml" --kubeconfig "$STATE/kubeconfig" --wait 120s
step "kind create cluster $SAM_KIND_CLUSTER"

# kwok on the host manages only the fake GPU nodes (annotation kwok.x-k8s.io/node=fake).
# shellcheck source=hack/kwok-args.sh
source "$KIND_DIR/../kwok-args.sh"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
kwok_args "$STATE/kubeconfig" 10.250.0.0/16 "$(free_port)"
nohup "$B/kwok" "${KWOK_ARGS[@]}" >"$STATE/logs/kwok.log" 2>&1 </dev/null &
echo $! >"$STATE/pids/kwok.pid"
K apply -f "$KIND_DIR/gpu-nodes.yaml" >/dev/null
K wait --for=condition=Ready node --all --timeout=120s >/dev/null
K -n kube-system rollout status deploy/coredns --timeout=120s >/dev/null
K -n local-path-storage rollout status deploy/local-path-provisioner --timeout=120s >/dev/null
step "nodes Ready (1 real, $(K get nodes -l type=kwok -o name | wc -l) kwok GPU), CoreDNS and volume provisioner running"

for ref in "${refs[@]}"; do bash "$KIND_DIR/load-image.sh" "$ref"; done
[[ -n ${SAM_KIND_IMAGES-operator inference} ]] && step "product images loaded into the node ($(numfmt --to=iec "$(store_free_bytes)") disk left)"
printf 'KUBECONFIG=%s\n' "$STATE/kubeconfig" >"$STATE/env"
kind_log "cluster $SAM_KIND_CLUSTER ready in $((SECONDS - t_all)) s: export KUBECONFIG=$STATE/kubeconfig"
