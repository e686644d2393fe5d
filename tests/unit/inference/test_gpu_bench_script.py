"""The GPU benchmark's one command (`bench/gpu_run.sh`, issue 13) keeps working where no GPU is lent: run here with
`--device cpu` on the tiny model, it must time the reference and the fast path per batch size, check fidelity and
write its JSON under $OUT, exactly as it would on the device machine; asked for CUDA without one, it must say so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[3]


def _run_gpu_script(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(out)}
    return subprocess.run(
        ["bash", "bench/gpu_run.sh", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_the_gpu_script_reports_throughput_and_fidelity_on_the_cpu(tmp_path: Path) -> None:
    run = _run_gpu_script(
        tmp_path, "--device", "cpu", "--variants", "vit_tiny", "--batches", "1,2", "--iters", "2", "--ref-iters", "1"
    )
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert report["device"].startswith("cpu")
    (result,) = report["results"]
    assert result["variant"] == "vit_tiny"
    assert result["cosine"] >= 0.99, result
    assert result["reference"]["img_s"] > 0 and result["reference"]["p50_s"] > 0
    assert [b["batch"] for b in result["batches"]] == [1, 2]
    for batch in result["batches"]:
        assert batch["img_s"] > 0 and batch["p50_s"] > 0
    text = (tmp_path / "gpu_bench.txt").read_text()
    assert "| vit_tiny | reference torch/float32 | 1 |" in text
    assert "fidelity: PASS" in text


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="the refusal is only seen where torch sees no GPU; this machine has CUDA"
)
def test_the_gpu_script_says_when_there_is_no_gpu(tmp_path: Path) -> None:
    run = _run_gpu_script(tmp_path, "--variants", "vit_tiny")
    assert run.returncode != 0
    assert "--device cuda but torch sees no GPU" in run.stdout + run.stderr
