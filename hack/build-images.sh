#!/usr/bin/env bash
# Builds the product's two images without a registry, idempotently, with podman (buildah) on a Debian-made base:
#   ghcr.io/sam-operator/sam-operator:<version>   operator/Dockerfile   (operator + gateway)
#   ghcr.io/sam-operator/sam-inference:<version>  inference/Dockerfile  (encoder; PyPI's torch)
# Each is also tagged :src-<hash of its build inputs>; an image whose hash tag exists is not rebuilt. The names
# are the chart's and the operator's defaults, so a `helm install` with no image values runs what was built here.
#   SAM_IMAGES     which to build (default "operator inference")
#   SAM_IMAGES_FORCE=1 rebuild even when the hash tag exists
#   SAM_IMAGES_KEEP    how many older :src-<hash> tags of each image to keep (default 1); older ones are removed, so
#                      repeated builds after source changes do not fill the disk (each encoder build is ~6 GB)
# Prints one line per image; the build's own output goes to ~/.cache/sam-operator/kind/logs/build-<image>.log.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/kind/lib.sh"
KIND_LOG_TAG=images
cd "$REPO_DIR"
VERSION=$(project_version)
bash "$KIND_DIR/build-base-images.sh"
base_id=$(podman image inspect --format '{{.Id}}' "$BASE_IMAGE")

# The hash of everything the build context sends (.dockerignore keeps it to these) plus the Dockerfile and base.
content_hash() { # dockerfile
  { echo "$base_id"; cat "$1" .dockerignore
    git ls-files -co --exclude-standard -- pyproject.toml README.md contract operator gateway inference \
      | grep -v -E '(__pycache__|\.pyc$|\.egg-info/)' | LC_ALL=C sort | xargs sha256sum; } | sha256sum | cut -c1-16
}
image_ref() { echo "ghcr.io/sam-operator/sam-$1"; }

# Removes the :src-* tags of REF beyond the current one and the SAM_IMAGES_KEEP newest others (podman then drops the
# layers no other image uses; the dependency layers the current image shares stay).
prune_old_tags() { # ref current-tag
  local ref=$1 current=$2 tag removed=0
  while read -r tag; do
    [[ $tag == "$current" ]] && continue
    podman rmi "$ref:$tag" >/dev/null 2>&1 && removed=$((removed + 1))
  done < <(podman images --sort created --format '{{.Tag}}' "$ref" | grep '^src-' | grep -vx "$current" \
             | tail -n +"$((${SAM_IMAGES_KEEP:-1} + 1))")
  if ((removed)); then kind_log "removed $removed older $ref:src-* tag(s)"; fi
}

build() { # name dockerfile [build args...]
  local name=$1 dockerfile=$2; shift 2
  local ref hash t0=$SECONDS
  ref=$(image_ref "$name"); hash=$(content_hash "$dockerfile")
  if [[ ${SAM_IMAGES_FORCE:-0} != 1 ]] && image_exists "$ref:src-$hash"; then
    podman tag "$ref:src-$hash" "$ref:$VERSION"
    kind_log "$ref:$VERSION is up to date (src-$hash)"; prune_old_tags "$ref" "src-$hash"; return 0
  fi
  kind_log "building $ref:$VERSION (src-$hash; log: $SAM_KIND_CACHE/logs/build-$name.log)"
  mkdir -p "$HOME/.cache/pip"
  # Host networking and this machine's CA bundle reach PyPI from inside the build; the pip cache is shared with
  # the host's (the build stage only: the final image copies /opt/venv, not the cache).
  quiet "$SAM_KIND_CACHE/logs/build-$name.log" podman build --network host --layers \
    --build-arg "PYTHON_IMAGE=$BASE_IMAGE" \
    --build-arg PIP_CERT=/etc/ssl/certs/host-ca-certificates.crt \
    -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/host-ca-certificates.crt:ro \
    -v "$HOME/.cache/pip:/root/.cache/pip" \
    "$@" -f "$dockerfile" -t "$ref:src-$hash" -t "$ref:$VERSION" .
  kind_log "built $ref:$VERSION in $((SECONDS - t0)) s, $(podman image inspect --format '{{.Size}}' "$ref:$VERSION" | numfmt --to=iec)"
  prune_old_tags "$ref" "src-$hash"
}

for name in ${SAM_IMAGES:-operator inference}; do
  case $name in
    operator) build operator operator/Dockerfile ;;
    # PyPI's torch: the PyTorch wheel index (the Dockerfile's public default) is not reachable from here.
    inference) build inference inference/Dockerfile --build-arg TORCH_INDEX_URL=https://pypi.org/simple ;;
    *) echo "unknown image: $name" >&2; exit 2 ;;
  esac
done
