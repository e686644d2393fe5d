#!/usr/bin/env bash
# Removes exactly what hack/kind-up.sh made: the kind cluster (its node container) and its kwok process; after the
# last of these scripts' clusters, also the podman network and /lib/modules if they were made for it, and the host
# sysctls as recorded before the first (hack/kind/lib.sh: host_state_register / host_state_release).
#   SAM_KIND_REMOVE_IMAGES=1  also remove the images the scripts built (node, base and product images)
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/kind/lib.sh"
KIND_LOG_TAG=kind-down
STATE=${SAM_KIND_STATE:-$SAM_KIND_CACHE/clusters/$SAM_KIND_CLUSTER}
f=$STATE/pids/kwok.pid
if [[ -f $f ]]; then
  pid=$(cat "$f"); kill "$pid" 2>/dev/null
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null; rm -f "$f"
fi
existed=0
if "$SAM_K8S_BIN/kind" get clusters 2>/dev/null | grep -qx "$SAM_KIND_CLUSTER"; then
  existed=1
  # The node container's memory high-water mark (cgroup v1 counts page cache too, e.g. image imports).
  cg=/sys/fs/cgroup/memory$(podman inspect --format '{{.State.CgroupPath}}' "$(kind_node)" 2>/dev/null)
  if [[ -r $cg/memory.max_usage_in_bytes ]]; then
    kind_log "node $(kind_node): peak memory $(numfmt --to=iec "$(cat "$cg/memory.max_usage_in_bytes")") (with page cache), rss now $(numfmt --to=iec "$(awk '$1=="total_rss"{print $2}' "$cg/memory.stat")")"
  fi
  quiet "$STATE/logs/kind-delete.log" "$SAM_K8S_BIN/kind" delete cluster --name "$SAM_KIND_CLUSTER" \
    --kubeconfig "$STATE/kubeconfig"
fi
host_state_release "$SAM_KIND_CLUSTER"
if [[ ${SAM_KIND_REMOVE_IMAGES:-0} == 1 ]]; then
  podman images --format '{{.Repository}}:{{.Tag}}' | grep -E '^(localhost/sam/|ghcr.io/sam-operator/|registry.k8s.io/)' \
    | xargs -r podman rmi -f >/dev/null
fi
if [[ $existed == 1 ]]; then kind_log "kind cluster $SAM_KIND_CLUSTER removed"; else kind_log "no kind cluster $SAM_KIND_CLUSTER"; fi
