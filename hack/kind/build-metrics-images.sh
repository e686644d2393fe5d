#!/usr/bin/env bash
# The autoscaling test's metrics stack as images, without a registry (tests/kind/test_autoscaling_on_kind.py):
#   localhost/sam/prometheus:<debian version>      Debian's prometheus binary (apt; hack/setup.sh installs it) on
#                                                  the Debian base image (it links only libc)
#   localhost/sam/prometheus-adapter:<version>     prometheus-adapter built from its Go module by
#                                                  hack/build-tools.sh (static), on the busybox base
# Idempotent: an image whose tag exists is kept (podman rmi it to rebuild). Prints one line per image.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
KIND_LOG_TAG=metrics-images
PROMETHEUS_ADAPTER_VERSION=${PROMETHEUS_ADAPTER_VERSION:-v0.12.0}
prometheus_version() { prometheus --version 2>&1 | awk 'NR==1{print $3}' | cut -d+ -f1; }
PROMETHEUS_IMAGE=localhost/sam/prometheus:$(prometheus_version)
ADAPTER_IMAGE=localhost/sam/prometheus-adapter:$PROMETHEUS_ADAPTER_VERSION

bash "$KIND_DIR/build-base-images.sh"
build() { # image base binary entrypoint-name
  local image=$1 base=$2 binary=$3 name=$4 d
  if image_exists "$image"; then kind_log "$image is up to date"; return 0; fi
  [[ -x $binary ]] || { echo "missing $binary (apt-get install prometheus / hack/build-tools.sh)" >&2; exit 1; }
  d=$(mktemp -d); cp "$binary" "$d/$name"
  # Nobody's uid; a read-only root filesystem works (Prometheus writes its TSDB to a volume).
  printf 'FROM %s\nCOPY %s /usr/local/bin/%s\nUSER 65534:65534\nENTRYPOINT ["/usr/local/bin/%s"]\n' \
    "$base" "$name" "$name" "$name" >"$d/Containerfile"
  quiet "$SAM_KIND_CACHE/logs/build-$name.log" podman build --network none -f "$d/Containerfile" -t "$image" "$d"
  rm -rf "$d"
  kind_log "built $image ($(podman image inspect --format '{{.Size}}' "$image" | numfmt --to=iec))"
}
build "$PROMETHEUS_IMAGE" "$BASE_IMAGE" "$(command -v prometheus || echo /usr/bin/prometheus)" prometheus
build "$ADAPTER_IMAGE" "$BUSYBOX_IMAGE" "$SAM_K8S_BIN/prometheus-adapter" prometheus-adapter
echo "PROMETHEUS_IMAGE=$PROMETHEUS_IMAGE"
echo "ADAPTER_IMAGE=$ADAPTER_IMAGE"
