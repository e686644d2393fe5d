#!/usr/bin/env bash
# The GPU benchmark as one command for the device tool (bench/gpu_bench.py; see its docstring).
#
# Here, once:   bash bench/gpu_run.sh --prepare
#   copies segment_anything (pure Python; the device image has torch but not it) into .device-site/ and
#   ignores that folder in .git/info/exclude.
# Then:         device run, carry [".device-site"], command "bash bench/gpu_run.sh"  (timeout_s 540)
#   extra arguments go to gpu_bench.py, e.g. "bash bench/gpu_run.sh --variants vit_b --batches 1,8".
# On this CPU:  PYTHON=.venv/bin/python bash bench/gpu_run.sh --device cpu --variants vit_tiny --batches 1,2 \
#                 --iters 2 --ref-iters 1
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ ${1:-} == --prepare ]]; then
  src=$(.venv/bin/python -c 'import os, segment_anything; print(os.path.dirname(segment_anything.__file__))')
  rm -rf .device-site && mkdir -p .device-site && cp -r "$src" .device-site/
  grep -qx '/.device-site/' .git/info/exclude 2>/dev/null || echo '/.device-site/' >> .git/info/exclude
  echo "prepared .device-site/ ($(du -sh .device-site | cut -f1)); carry it in the device run"
  exit 0
fi
python=${PYTHON:-python3}
export PYTHONPATH="$PWD/inference:$PWD/tests:$PWD/.device-site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out=${OUT:-/tmp}
"$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv || true
"$python" bench/gpu_bench.py --json "$out/gpu_bench.json" "$@" 2>&1 | tee "$out/gpu_bench.txt"
