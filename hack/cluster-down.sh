#!/usr/bin/env bash
# Stops exactly the processes hack/cluster-up.sh started (by pid file), newest first, and removes etcd's data.
set -uo pipefail
WORK=${SAM_CLUSTER_DIR:-$HOME/.cache/sam-operator/cluster}
for n in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
  f=$WORK/pids/$n.pid; [[ -f $f ]] || continue
  pid=$(cat "$f"); kill "$pid" 2>/dev/null
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null; rm -f "$f"
done
if [[ -f $WORK/etcd-data-dir ]]; then rm -rf "$(cat "$WORK/etcd-data-dir")"; rm -f "$WORK/etcd-data-dir"; fi
echo "cluster stopped ($WORK)"
