#!/usr/bin/env bash
# Base images made from Debian's packages only (no registry): the product images' Python base, the kind node's
# OS, and a tiny busybox for the CNI installer, the volume provisioner's helper pods and test pods.
# Idempotent: an image that exists is kept (podman rmi it to rebuild). Rootfs tarballs are cached.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
KIND_LOG_TAG=base-images
mkdir -p "$SAM_KIND_CACHE/logs"
rootfs() { # name packages
  local out=$SAM_KIND_CACHE/$1.tar
  [[ -f $out ]] && return 0
  kind_log "debian bookworm rootfs '$1' from $(debian_mirror) (mmdebstrap; about a minute)"
  quiet "$SAM_KIND_CACHE/logs/mmdebstrap-$1.log" mmdebstrap --variant=minbase --format=tar --include="$2" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    bookworm "$out.tmp" "$(debian_mirror)"
  mv "$out.tmp" "$out"
}

if ! image_exists "$BASE_IMAGE"; then
  # Bookworm's python3 is 3.11, as python:3.11-slim-bookworm (the Dockerfiles' public default). Debian names it
  # python3 only: the Dockerfiles call python3.
  rootfs debian-python python3,python3-venv,ca-certificates
  podman import -q --change 'ENV LANG=C.UTF-8' "$SAM_KIND_CACHE/debian-python.tar" "$BASE_IMAGE" >/dev/null
  kind_log "built $BASE_IMAGE"
fi
if ! image_exists "$NODE_BASE_IMAGE"; then
  rootfs debian-node systemd,systemd-sysv,dbus,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,fuse-overlayfs,e2fsprogs,bash,ca-certificates,curl,jq,procps,containerd,runc,containernetworking-plugins,socat
  podman import -q --change 'ENV container=docker' "$SAM_KIND_CACHE/debian-node.tar" "$NODE_BASE_IMAGE" >/dev/null
  kind_log "built $NODE_BASE_IMAGE"
fi
if ! image_exists "$BUSYBOX_IMAGE"; then
  command -v busybox >/dev/null || { echo "busybox missing: apt-get install busybox-static (make setup does)" >&2; exit 1; }
  d=$(mktemp -d); trap 'rm -rf "$d"' EXIT
  mkdir -p "$d/bin" "$d/tmp" && cp "$(command -v busybox)" "$d/bin/busybox"
  for l in sh ls cat cp mkdir rm rmdir chmod echo sleep wget httpd id touch sha256sum; do ln -s busybox "$d/bin/$l"; done
  tar -C "$d" -c . | podman import -q --change 'ENV PATH=/bin' - "$BUSYBOX_IMAGE" >/dev/null
  kind_log "built $BUSYBOX_IMAGE"
fi
