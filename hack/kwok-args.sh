# kwok's command line for the fake nodes (annotation kwok.x-k8s.io/node=fake), shared by hack/cluster-up.sh (the
# kwok-only cluster) and hack/kind-up.sh (GPU nodes beside kind's real node). Sourced; needs versions.sh first.
# shellcheck shell=bash
kwok_args() { # kubeconfig pod-cidr server-port: fills the array KWOK_ARGS
  local stages=$SAM_K8S_BIN/kwok-stages
  KWOK_ARGS=(--kubeconfig="$1"
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake
    --node-ip=127.0.0.1 --node-name=localhost --cidr="$2" --node-lease-duration-seconds=40
    --server-address="127.0.0.1:$3"
    --config="$stages/node/fast/node-initialize.yaml"
    --config="$stages/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml"
    --config="$stages/pod/fast/pod-ready.yaml" --config="$stages/pod/fast/pod-complete.yaml"
    --config="$stages/pod/fast/pod-delete.yaml")
}
