#!/usr/bin/env bash
# Starts a real Kubernetes control plane on 127.0.0.1 only: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kwok (simulated kubelets), plus fake nodes,
# some advertising nvidia.com/gpu. Binaries come from hack/build-tools.sh.
#
#   SAM_CLUSTER_DIR   work folder (pki, kubeconfig, logs, pids); default ~/.cache/sam-operator/cluster
#   SAM_CLUSTER_NODES node manifest to apply; default hack/cluster/nodes.yaml
#   P_ETCD P_PEER P_API P_KCM P_SCHED  ports; default: free ports picked at start
# Writes $SAM_CLUSTER_DIR/kubeconfig and $SAM_CLUSTER_DIR/env (KUBECONFIG=...). Stop with hack/cluster-down.sh.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=hack/versions.sh
source "$HERE/versions.sh"
BIN=$SAM_K8S_BIN
WORK=${SAM_CLUSTER_DIR:-$HOME/.cache/sam-operator/cluster}
NODES=${SAM_CLUSTER_NODES:-$HERE/cluster/nodes.yaml}
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok; do
  [[ -x $BIN/$b ]] || { echo "missing $BIN/$b: run hack/build-tools.sh first" >&2; exit 1; }
done
if [[ -f $WORK/pids/kube-apiserver.pid ]] && kill -0 "$(cat "$WORK/pids/kube-apiserver.pid")" 2>/dev/null; then
  echo "cluster already running: KUBECONFIG=$WORK/kubeconfig"; exit 0
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P_ETCD=${P_ETCD:-$(free_port)}; P_PEER=${P_PEER:-$(free_port)}; P_API=${P_API:-$(free_port)}
P_KCM=${P_KCM:-$(free_port)}; P_SCHED=${P_SCHED:-$(free_port)}
rm -rf "$WORK"; mkdir -p "$WORK"/{pki,logs,pids}
ETCD_DATA=$(mktemp -d /dev/shm/sam-etcd.XXXXXX 2>/dev/null || mktemp -d); echo "$ETCD_DATA" >"$WORK/etcd-data-dir"
PKI=$WORK/pki; KCFG=$WORK/kubeconfig
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
t0=$SECONDS
log() { printf '[cluster-up %3ds] %s\n' $((SECONDS - t0)) "$*"; }

# ---------- PKI (openssl): CA, apiserver serving cert, admin client cert (system:masters), SA key pair
o() { openssl "$@" 2>/dev/null; }
o genrsa -out "$PKI/ca.key" 2048
o req -x509 -new -nodes -key "$PKI/ca.key" -subj "/CN=sam-operator-local-ca" -days 3650 -out "$PKI/ca.crt" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
leaf() { # name subject extension-lines
  o genrsa -out "$PKI/$1.key" 2048
  o req -new -key "$PKI/$1.key" -subj "$2" -out "$PKI/$1.csr"
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid,issuer" "$3" >"$PKI/$1.ext"
  o x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 3650 \
    -extfile "$PKI/$1.ext" -out "$PKI/$1.crt"
}
leaf apiserver "/CN=kube-apiserver" "extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.96.0.1"
leaf admin "/O=system:masters/CN=kubernetes-admin" "extendedKeyUsage=clientAuth"
o genrsa -out "$PKI/sa.key" 2048; o rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
cat >"$KCFG" <<KC
apiVersion: v1
kind: Config
clusters:
- name: sam-local
  cluster:
    server: https://127.0.0.1:$P_API
    certificate-authority: $PKI/ca.crt
users:
- name: admin
  user:
    client-certificate: $PKI/admin.crt
    client-key: $PKI/admin.key
contexts:
- name: sam-local
  context: {cluster: sam-local, user: admin}
current-context: sam-local
KC
log "PKI and kubeconfig written"

start() { local n=$1; shift; nohup "$@" >"$WORK/logs/$n.log" 2>&1 </dev/null & echo $! >"$WORK/pids/$n.pid"; }
wait_for() { # what seconds cmd...
  local what=$1 t=$2; shift 2
  for _ in $(seq 1 $((t * 4))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
  echo "timeout waiting for $what" >&2; tail -n 30 "$WORK"/logs/*.log >&2; return 1
}
k() { "$BIN/kubectl" --kubeconfig "$KCFG" "$@"; }

start etcd "$BIN/etcd" --name=node0 --data-dir="$ETCD_DATA" \
  --listen-client-urls="http://127.0.0.1:$P_ETCD" --advertise-client-urls="http://127.0.0.1:$P_ETCD" \
  --listen-peer-urls="http://127.0.0.1:$P_PEER" --initial-advertise-peer-urls="http://127.0.0.1:$P_PEER" \
  --initial-cluster="node0=http://127.0.0.1:$P_PEER" --log-level=warn --unsafe-no-fsync=true \
  --listen-metrics-urls="http://127.0.0.1:$(free_port)"
wait_for etcd 30 curl -fsS "http://127.0.0.1:$P_ETCD/health"
log "etcd healthy on 127.0.0.1:$P_ETCD"

start kube-apiserver "$BIN/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$P_ETCD" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$P_API" \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" --cert-dir="$PKI" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --service-cluster-ip-range=10.96.0.0/16 \
  --authorization-mode=Node,RBAC --allow-privileged=true \
  --endpoint-reconciler-type=none --kubelet-preferred-address-types=InternalIP \
  --profiling=false --v=1
wait_for kube-apiserver 120 k get --raw=/readyz
log "kube-apiserver ready on https://127.0.0.1:$P_API"

start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig="$KCFG" \
  --bind-address=127.0.0.1 --secure-port="$P_KCM" --leader-elect=false \
  --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
  --service-cluster-ip-range=10.96.0.0/16 --controllers='*' --v=1
start kube-scheduler "$BIN/kube-scheduler" --kubeconfig="$KCFG" \
  --bind-address=127.0.0.1 --secure-port="$P_SCHED" --leader-elect=false --v=1
wait_for kube-controller-manager 60 curl -fsSk "https://127.0.0.1:$P_KCM/healthz"
wait_for kube-scheduler 60 curl -fsSk "https://127.0.0.1:$P_SCHED/healthz"
log "kube-controller-manager and kube-scheduler healthy"

# shellcheck source=hack/kwok-args.sh
source "$HERE/kwok-args.sh"
kwok_args "$KCFG" 10.244.0.0/16 "$(free_port)"
start kwok "$BIN/kwok" "${KWOK_ARGS[@]}"

wait_for "default serviceaccount" 60 k -n default get serviceaccount default
[[ -n $NODES ]] && k apply -f "$NODES" >/dev/null
wait_for "nodes Ready" 60 k wait --for=condition=Ready node --all --timeout=2s
printf 'KUBECONFIG=%s\n' "$KCFG" >"$WORK/env"
log "cluster ready: export KUBECONFIG=$KCFG"
