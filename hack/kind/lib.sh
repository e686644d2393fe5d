# Shared settings of the kind scripts (sourced): versions, caches, podman's settings on this host, image names.
# shellcheck shell=bash
KIND_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$KIND_DIR/../.." && pwd)
# shellcheck source=hack/versions.sh
source "$KIND_DIR/../versions.sh"
SAM_KIND_CACHE=${SAM_KIND_CACHE:-$HOME/.cache/sam-operator/kind}
# podman, not docker: kind's docker provider cannot start a node on a host without CAP_SYS_RESOURCE (docker's
# --privileged asks for every capability), podman's asks only for the bounding set. runc, not crun: crun refuses
# this hybrid cgroup v1/v2 host. No daemon: podman is a plain process per command.
export CONTAINERS_CONF=$KIND_DIR/containers.conf
export KIND_EXPERIMENTAL_PROVIDER=podman
SAM_KIND_CLUSTER=${SAM_KIND_CLUSTER:-sam-kind}
NODE_IMAGE=localhost/sam/kind-node:$K8S_VERSION
BASE_IMAGE=localhost/sam/debian-python:bookworm
NODE_BASE_IMAGE=localhost/sam/debian-node:bookworm
BUSYBOX_IMAGE=localhost/sam/busybox:1
# What kubeadm v1.34 deploys; built here from the same sources (etcd: ours, named by its own version).
ETCD_IMAGE_TAG=${ETCD_VERSION#v}
COREDNS_IMAGE=registry.k8s.io/coredns/coredns:$COREDNS_VERSION
PAUSE_IMAGE=registry.k8s.io/pause:3.10.1
LOCAL_PATH_IMAGE=localhost/sam/local-path-provisioner:$LOCAL_PATH_VERSION

kind_log() { printf '[%s %(%H:%M:%S)T] %s\n' "${KIND_LOG_TAG:-kind}" -1 "$*"; }
# Runs a noisy step with its output in a log file; prints the log's tail only when it fails.
quiet() { # log-file command...
  local logf=$1; shift
  mkdir -p "$(dirname "$logf")"
  if ! "$@" >"$logf" 2>&1; then
    echo "failed: $* (log: $logf)" >&2; tail -n 40 "$logf" >&2; return 1
  fi
}
image_exists() { podman image exists "$1"; }
debian_mirror() { awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || echo http://deb.debian.org/debian; }
# The host sysctls a kind node changes (kubelet's kernel tunables; netavark's IP forwarding).
kind_host_sysctls() {
  echo vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys \
    kernel.keys.root_maxbytes net.ipv4.ip_forward
}
project_version() { python3 -c 'import tomllib; print(tomllib.load(open("'"$REPO_DIR"'/pyproject.toml","rb"))["project"]["version"])'; }
kind_node() { echo "$SAM_KIND_CLUSTER-control-plane"; }
# Free bytes on the filesystem of podman's store (the kind node's containerd lives there too).
store_free_bytes() { df --output=avail -B1 "$(podman info --format '{{.Store.GraphRoot}}')" | tail -n 1 | tr -d ' '; }
# Fails, before anything is created, when the images about to be loaded into the node cannot fit: the node's
# containerd keeps each image twice (the imported layers and their unpacked snapshot), plus SAM_KIND_DISK_MARGIN_GB
# (default 3) for pods, volumes and the tests. A full disk would otherwise stop the import minutes later with a
# bare "no space left on device" from inside the node.
require_disk_for_images() { # image-ref...
  local need=$((${SAM_KIND_DISK_MARGIN_GB:-3} * 1024 ** 3)) free ref
  for ref in "$@"; do need=$((need + 2 * $(podman image inspect --format '{{.Size}}' "$ref"))); done
  free=$(store_free_bytes)
  if ((free < need)); then
    echo "not enough disk for the kind node: $(numfmt --to=iec "$free") free on $(podman info --format '{{.Store.GraphRoot}}'), need $(numfmt --to=iec "$need") (2x the images to load: $*, + ${SAM_KIND_DISK_MARGIN_GB:-3}G)." \
      "Free space: old clones' .venv folders, 'podman image prune', hack/kind-down.sh SAM_KIND_REMOVE_IMAGES=1" >&2
    return 1
  fi
  kind_log "disk: $(numfmt --to=iec "$free") free, the node needs about $(numfmt --to=iec "$need")"
}

# What a kind cluster changes on the host is host-wide (the kubelet's sysctls), so it is shared by every cluster these
# scripts run at once: the first cluster up records the host as it was, the last one down restores it.
HOST_STATE=$SAM_KIND_CACHE/host
_host_lock() { mkdir -p "$HOST_STATE"; exec 9>"$SAM_KIND_CACHE/host.lock"; flock 9; }
host_state_register() { # cluster-name
  _host_lock
  if [[ ! -s $HOST_STATE/clusters ]]; then
    for s in $(kind_host_sysctls); do printf '%s=%s\n' "$s" "$(sysctl -n "$s")"; done >"$HOST_STATE/sysctls"
    rm -f "$HOST_STATE"/created-*
    # podman will not bind-mount a missing /lib/modules (kind mounts it into the node).
    [[ -e /lib/modules ]] || { mkdir -p /lib/modules; touch "$HOST_STATE/created-lib-modules"; }
    podman network exists kind || touch "$HOST_STATE/created-podman-network"
  fi
  grep -qx "$1" "$HOST_STATE/clusters" 2>/dev/null || echo "$1" >>"$HOST_STATE/clusters"
  flock -u 9
}
host_state_release() { # cluster-name
  _host_lock
  { grep -vx "$1" "$HOST_STATE/clusters" 2>/dev/null || true; } >"$HOST_STATE/clusters.new"
  mv "$HOST_STATE/clusters.new" "$HOST_STATE/clusters"
  if [[ ! -s $HOST_STATE/clusters ]]; then
    if [[ -f $HOST_STATE/created-podman-network ]] && podman network exists kind \
        && [[ -z $(podman ps -aq --filter network=kind) ]]; then
      podman network rm kind >/dev/null
    fi
    if [[ -f $HOST_STATE/sysctls ]]; then
      while IFS='=' read -r key value; do
        [[ $(sysctl -n "$key") == "$value" ]] || sysctl -q -w "$key=$value" >/dev/null
      done <"$HOST_STATE/sysctls"
    fi
    [[ -f $HOST_STATE/created-lib-modules ]] && rmdir /lib/modules 2>/dev/null
    rm -f "$HOST_STATE"/created-* "$HOST_STATE/sysctls"
  fi
  flock -u 9
}
