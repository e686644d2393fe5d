#!/usr/bin/env bash
# Loads one image from podman's store into the kind node's containerd (what `kind load docker-image` does for
# docker), streamed, no tarball on disk. Skipped when the node already has that image id under that name.
#   hack/kind/load-image.sh IMAGE
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
KIND_LOG_TAG=load-image
ref=$1; node=$(kind_node)
id=$(podman image inspect --format '{{.Id}}' "$ref")
have=$(podman exec "$node" crictl inspecti -o go-template --template '{{.status.id}}' "$ref" 2>/dev/null || true)
if [[ $have == "sha256:$id" ]]; then kind_log "$ref already in $node"; exit 0; fi
t0=$SECONDS
podman save -q --format docker-archive "$ref" \
  | podman exec -i "$node" ctr --namespace=k8s.io images import --digests - >/dev/null
have=$(podman exec "$node" crictl inspecti -o go-template --template '{{.status.id}}' "$ref")
[[ $have == "sha256:$id" ]] || { echo "loaded $ref but the node reports id $have, not sha256:$id" >&2; exit 1; }
kind_log "loaded $ref into $node in $((SECONDS - t0)) s ($(podman image inspect --format '{{.Size}}' "$ref" | numfmt --to=iec))"
