#!/usr/bin/env bash
# Builds the local Kubernetes test toolchain from Go modules into a cache outside git:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok, helm (the kwok cluster), and for the
# kind cluster with real containers: kubelet, kubeadm, kube-proxy, kind, CoreDNS, crictl, local-path-provisioner,
# prometheus-adapter (the custom-metrics API the autoscaling test's HPA reads).
# Idempotent: every binary that already exists is skipped. Safe to re-run after an interruption.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=hack/versions.sh
source "$HERE/versions.sh"
SRC=${SAM_K8S_SRC:-$HOME/.cache/sam-operator/src}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false"
mkdir -p "$SAM_K8S_BIN" "$SRC"
STAGING=v0.${K8S_VERSION#v1.}                # v1.34.4 -> v0.34.4
MINOR=$(echo "$K8S_VERSION" | cut -d. -f2)
log() { printf '[build-tools %(%H:%M:%S)T] %s\n' -1 "$*"; }
gomod_field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

build_k8s() {
  local d=$SRC/k8s-$K8S_VERSION
  rm -rf "$d"; mkdir -p "$d"; cd "$d"
  log "k8s $K8S_VERSION: resolving modules (k8s.io/kubernetes requires its staging modules at v0.0.0)"
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | gomod_field GoMod)
  go mod init localtools/k8s >/dev/null 2>&1
  go mod edit -go=1.24.0 -godebug=default=go1.24
  for m in $(sed -n 's/^[[:space:]]*\(k8s\.io\/[A-Za-z0-9._-]*\) v0\.0\.0$/\1/p' "$gomod"); do
    go mod edit -replace="$m=$m@$STAGING"
  done
  local c tools=()
  for c in $K8S_CMDS; do tools+=("k8s.io/kubernetes/cmd/$c@$K8S_VERSION"); done
  go get -tool "${tools[@]}"
  go mod tidy
  local ld="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$MINOR"
    ld+=" -X $p.gitCommit=0000000000000000000000000000000000000000"
    ld+=" -X $p.gitTreeState=clean -X $p.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  done
  for c in $K8S_CMDS; do
    [[ -x $SAM_K8S_BIN/$c ]] && continue
    log "compiling $c (a cold compile takes several minutes on 2 cores)"
    go build -tags selinux,notest,grpcnotrace -ldflags "$ld" -o "$SAM_K8S_BIN/$c.tmp" "k8s.io/kubernetes/cmd/$c"
    mv "$SAM_K8S_BIN/$c.tmp" "$SAM_K8S_BIN/$c"
  done
}

build_etcd() {
  local d=$SRC/etcd-$ETCD_VERSION
  rm -rf "$d"; mkdir -p "$d"; cd "$d"
  log "etcd $ETCD_VERSION"
  go mod init localtools/etcd >/dev/null 2>&1
  go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go mod tidy
  go build -ldflags "-s -w" -o "$SAM_K8S_BIN/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$SAM_K8S_BIN/etcd.tmp" "$SAM_K8S_BIN/etcd"
}

build_kwok() {
  log "kwok $KWOK_VERSION"
  cd "$SRC"
  GOBIN=$SAM_K8S_BIN go install -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
}

copy_kwok_stages() {
  cd "$SRC"
  local dir
  dir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | gomod_field Dir)
  rm -rf "$SAM_K8S_BIN/kwok-stages"; mkdir -p "$SAM_K8S_BIN/kwok-stages"
  cp -r "$dir/kustomize/stage/." "$SAM_K8S_BIN/kwok-stages/"
  chmod -R u+w "$SAM_K8S_BIN/kwok-stages"
}

build_helm() {
  log "helm $HELM_VERSION"
  cd "$SRC"
  local H=helm.sh/helm/v3
  GOBIN=$SAM_K8S_BIN go install -ldflags "-s -w \
    -X $H/internal/version.version=$HELM_VERSION -X $H/internal/version.gitTreeState=clean \
    -X $H/pkg/chartutil.k8sVersionMajor=1 -X $H/pkg/chartutil.k8sVersionMinor=$MINOR \
    -X $H/pkg/lint/rules.k8sVersionMajor=1 -X $H/pkg/lint/rules.k8sVersionMinor=$MINOR" \
    "$H/cmd/helm@$HELM_VERSION"
}

build_go_tool() { # name module@version [extra ldflags]
  log "$1 ${2#*@}"
  cd "$SRC"
  GOBIN=$SAM_K8S_BIN go install -ldflags "-s -w ${3:-}" "$2"
}

# prometheus-adapter is built inside its own module (its go.mod and go.sum pin every dependency): `go install
# module@version` would also ask the proxy for the module's version list, which the proxy here refuses.
PROMETHEUS_ADAPTER_VERSION=${PROMETHEUS_ADAPTER_VERSION:-v0.12.0}
build_prometheus_adapter() {
  log "prometheus-adapter $PROMETHEUS_ADAPTER_VERSION"
  cd "$SRC"
  local d=$SRC/prometheus-adapter-$PROMETHEUS_ADAPTER_VERSION dir
  dir=$(go mod download -json "sigs.k8s.io/prometheus-adapter@$PROMETHEUS_ADAPTER_VERSION" | gomod_field Dir)
  rm -rf "$d"; cp -r "$dir" "$d"; chmod -R u+w "$d"; cd "$d"
  go build -ldflags "-s -w" -o "$SAM_K8S_BIN/prometheus-adapter.tmp" ./cmd/adapter
  mv "$SAM_K8S_BIN/prometheus-adapter.tmp" "$SAM_K8S_BIN/prometheus-adapter"
}

# kubelet, kubeadm and kube-proxy go into the kind node image; kubeadm and kind read the version ldflags.
K8S_CMDS="kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kubeadm kube-proxy"
start=$SECONDS
for c in $K8S_CMDS; do
  if [[ ! -x $SAM_K8S_BIN/$c ]]; then build_k8s; break; fi
done
[[ -x $SAM_K8S_BIN/etcd ]] || build_etcd
[[ -x $SAM_K8S_BIN/kwok ]] || build_kwok
[[ -f $SAM_K8S_BIN/kwok-stages/pod/fast/pod-ready.yaml ]] || copy_kwok_stages
[[ -x $SAM_K8S_BIN/helm ]] || build_helm
[[ -x $SAM_K8S_BIN/kind ]] || build_go_tool kind "sigs.k8s.io/kind@$KIND_VERSION"
[[ -x $SAM_K8S_BIN/coredns ]] || build_go_tool coredns "github.com/coredns/coredns@$COREDNS_VERSION"
[[ -x $SAM_K8S_BIN/crictl ]] || build_go_tool crictl "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
[[ -x $SAM_K8S_BIN/local-path-provisioner ]] || \
  build_go_tool local-path-provisioner "github.com/rancher/local-path-provisioner@$LOCAL_PATH_VERSION"
[[ -x $SAM_K8S_BIN/prometheus-adapter ]] || build_prometheus_adapter
log "tools ready in $SAM_K8S_BIN ($((SECONDS - start)) s)"
"$SAM_K8S_BIN/kube-apiserver" --version
# sed, not head: head exits after one line and, under pipefail, etcd's SIGPIPE failed setup at random.
"$SAM_K8S_BIN/etcd" --version | sed -n 1p
"$SAM_K8S_BIN/kwok" --version
"$SAM_K8S_BIN/helm" version --short
