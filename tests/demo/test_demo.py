"""`make demo`, headless, end to end: the demo's own cluster, chart, operator, gateway and pod processes.

Runs hack/demo.sh with DEMO_KEEP=1 into a temporary DEMO_DIR, checks what it produced (the function CVAT would
list, the embedding, a mask that matches the PyTorch model's mask for the same click), that everything it
started still answers, then that hack/demo-down.sh leaves nothing running.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from harness.cluster import REPO
from harness.cvat import CvatClient
from PIL import Image

pytestmark = [pytest.mark.cluster, pytest.mark.e2e, pytest.mark.slow]


def _demo_env(demo_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "DEMO_IMAGE")}
    # The kwok-simulated demo. (make demo's default where containers run, the kind demo, takes a cluster of its own
    # and minutes of image loading; tests/kind drives the same real-pods path.)
    return {**env, "DEMO_DIR": str(demo_dir), "DEMO_KEEP": "1", "NO_PROXY": "127.0.0.1,localhost", "SAM_DEMO_KWOK": "1"}


def _pid_entries(demo_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in (demo_dir / "pids").glob("*.pid")]


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return not stat.split(") ", 1)[1].startswith("Z")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    demo_dir = tmp_path_factory.mktemp("demo")
    env = _demo_env(demo_dir)
    proc = subprocess.run(
        ["bash", str(REPO / "hack" / "demo.sh")], env=env, capture_output=True, text=True, timeout=540, cwd=REPO
    )
    try:
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-4000:]
        yield demo_dir, proc.stdout
    finally:
        subprocess.run(["bash", str(REPO / "hack" / "demo-down.sh")], env=env, capture_output=True, timeout=180)


def test_the_demo_says_what_it_does_at_each_step(demo: tuple[Path, str]) -> None:
    _, out = demo
    for n in range(1, 11):
        assert f"[{n}/10]" in out
    assert "helm install" in out and "GET /api/functions" in out and "Metrics that moved" in out
    assert "sam_gateway_requests_total" in out and "sam_inference_cache_hits_total" in out


def test_the_function_is_listed_and_the_embedding_has_cvats_shape(demo: tuple[Path, str]) -> None:
    demo_dir, out = demo
    result = json.loads((demo_dir / "result.json").read_text())
    assert result["function"] in out and "type=interactor" in out
    assert result["embedding_shape"] == [1, 256, 64, 64] and result["embedding_bytes"] == 4_194_304
    assert "same blob: True" in out  # direct mode answered like the dashboard API


def test_the_saved_mask_matches_the_models_mask_for_the_same_click(demo: tuple[Path, str]) -> None:
    from sam_inference.torch_models.model import load_sam
    from segment_anything import SamPredictor
    from segment_anything.utils.onnx import SamOnnxModel

    demo_dir, _ = demo
    result = json.loads((demo_dir / "result.json").read_text())
    assert Path(result["overlay"]).stat().st_size > 0
    mask = np.asarray(Image.open(result["mask"])) > 0
    rgb = np.asarray(Image.open(result["image"]).convert("RGB"))
    assert mask.shape == rgb.shape[:2] and mask.any()
    assert Image.open(result["overlay"]).size == (rgb.shape[1], rgb.shape[0])

    sam = load_sam("vit_tiny", Path(result["checkpoint"]))
    predictor = SamPredictor(sam)
    predictor.set_image(rgb)
    h, w = rgb.shape[:2]
    points = result["pos_points"] + result["neg_points"]
    coords = torch.tensor([points], dtype=torch.float32) * (1024 / max(w, h))
    labels = torch.tensor([[1.0] * len(result["pos_points"]) + [0.0] * len(result["neg_points"])])
    with torch.no_grad():
        logits, _, _ = SamOnnxModel(sam, return_single_mask=True)(
            predictor.get_image_embedding(),
            coords,
            labels,
            torch.zeros(1, 1, 256, 256),
            torch.zeros(1),
            torch.tensor([h, w], dtype=torch.float32),
        )
    expected = (logits[0, 0] > 0).numpy()
    assert (mask == expected).mean() > 0.999
    ys, xs = np.nonzero(expected)
    assert result["box"] == [xs.min(), ys.min(), xs.max(), ys.max()]


def test_with_demo_keep_everything_still_runs_and_answers(demo: tuple[Path, str]) -> None:
    demo_dir, out = demo
    entries = _pid_entries(demo_dir)
    names = {p.stem for p in (demo_dir / "pids").glob("*.pid")}
    assert {"operator", "gateway", "pod-runner", "checkpoint-server"} <= names
    assert any(n.startswith("pod-") and n != "pod-runner" for n in names)
    assert all(_running(e["pid"]) for e in entries)
    port = int(out.split("curl -s http://127.0.0.1:")[1].split("/")[0])
    assert json.loads((demo_dir / "result.json").read_text())["function"] in CvatClient(port).list_functions()


def test_demo_down_leaves_nothing_running(demo: tuple[Path, str]) -> None:
    demo_dir, _ = demo
    pids = [e["pid"] for e in _pid_entries(demo_dir)]
    pids += [int(p.read_text()) for p in (demo_dir / "cluster" / "pids").glob("*.pid")]
    assert len(pids) >= 10  # 5 control-plane processes, operator, gateway, checkpoint server, runner, pod
    down = subprocess.run(
        ["bash", str(REPO / "hack" / "demo-down.sh")],
        env=_demo_env(demo_dir),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert down.returncode == 0, down.stdout + down.stderr
    assert [pid for pid in pids if _running(pid)] == []
    assert not list((demo_dir / "pids").glob("*.pid"))
    assert not list((demo_dir / "cluster" / "pids").glob("*.pid"))
