#!/usr/bin/env bash
# Sets up a fresh machine for sam-operator, idempotently (fast when everything is already there):
# system packages, the Python virtualenv with the project installed, and the local cluster's toolchain.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { printf '[setup] %s\n' "$*"; }

need_apt=()
for tool in openssl:openssl curl:curl promtool:prometheus; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need_apt+=("${tool#*:}")
done
if ((${#need_apt[@]})); then
  log "installing system packages: ${need_apt[*]}"
  SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  # Debian's prometheus package starts a service on install where systemd runs; policy-rc.d keeps it off here.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  log "creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [[ ! -f $stamp ]]; then
  log "installing Python dependencies into .venv (torch is large: several minutes on a cold cache)"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  rm -f .venv/.installed-*; touch "$stamp"
fi

log "building the local Kubernetes toolchain if missing (cold: about 6 minutes on 2 cores; cached afterwards)"
bash hack/build-tools.sh
log "setup complete"
