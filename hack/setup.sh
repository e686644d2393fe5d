#!/usr/bin/env bash
# Sets up a fresh machine for sam-operator, idempotently (fast when everything is already there):
# system packages (including what real containers need: podman, runc, mmdebstrap...), the Python virtualenv with
# the project installed, and the cluster toolchain built from Go modules. Noisy output goes to
# ~/.cache/sam-operator/logs/, with one progress line per step here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { printf '[setup] %s\n' "$*"; }
LOGS=$HOME/.cache/sam-operator/logs; mkdir -p "$LOGS"
quiet() { # log-file command...: the command's output goes to the log, shown only when it fails
  local logf=$1; shift
  if ! "$@" >"$logf" 2>&1; then echo "[setup] failed: $* (log: $logf)" >&2; tail -n 40 "$logf" >&2; return 1; fi
}

# command:package. podman runs the kind cluster's node and builds the images (no daemon: each podman command is a
# process of its own); runc because crun refuses this kind of hybrid cgroup host; mmdebstrap makes the base images
# from Debian's packages; busybox-static is the tiny image for the CNI installer and the volume helper pods.
need_apt=()
for tool in openssl:openssl curl:curl promtool:prometheus podman:podman runc:runc netavark:netavark \
            mmdebstrap:mmdebstrap busybox:busybox-static newuidmap:uidmap iptables:iptables gcc:gcc; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || [[ -x /usr/lib/podman/${tool%%:*} ]] || need_apt+=("${tool#*:}")
done
[[ -x /usr/lib/cni/bridge ]] || need_apt+=(containernetworking-plugins)
[[ -f /usr/lib/x86_64-linux-gnu/libc.a || -f /usr/lib/aarch64-linux-gnu/libc.a ]] || need_apt+=(libc6-dev)
if ((${#need_apt[@]})); then
  log "installing system packages: ${need_apt[*]} (log: $LOGS/apt.log)"
  SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
  quiet "$LOGS/apt-update.log" $SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq
  # Debian's prometheus package starts a service on install where systemd runs; policy-rc.d keeps it off here.
  quiet "$LOGS/apt.log" env DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -q \
    --no-install-recommends "${need_apt[@]}"
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  log "creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [[ ! -f $stamp ]]; then
  log "installing Python dependencies into .venv (torch is large: several minutes on a cold cache; log: $LOGS/pip.log)"
  quiet "$LOGS/pip-upgrade.log" .venv/bin/pip install -q --upgrade pip
  # sam2 (SAM 2.1) is an sdist whose build needs torch: torch first, then sam2 built against it (pure Python, no
  # CUDA extension), then the project, whose extras add sam2's own dependencies (hydra-core, iopath).
  quiet "$LOGS/pip.log" .venv/bin/pip install 'torch>=2.2' 'torchvision>=0.17' setuptools wheel
  quiet "$LOGS/pip-sam2.log" env SAM2_BUILD_CUDA=0 .venv/bin/pip install --no-deps --no-build-isolation 'sam2==1.1.0'
  quiet "$LOGS/pip.log" .venv/bin/pip install -e '.[operator,inference,dev]'
  rm -f .venv/.installed-*; touch "$stamp"
fi

log "building the cluster toolchain if missing (cold: about 10 minutes on 2 cores; cached afterwards; log: $LOGS/build-tools.log)"
bash hack/build-tools.sh 2> "$LOGS/build-tools.log" || { tail -n 40 "$LOGS/build-tools.log" >&2; exit 1; }
log "setup complete"
