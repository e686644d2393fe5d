"""The exported CVAT-format decoder in onnxruntime against the PyTorch decoder on the same inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from sam_inference.__main__ import main
from sam_inference.torch_models.export import CVAT_OUTPUTS, UPSTREAM_OUTPUTS, CvatSamOnnxModel, read_stamp
from segment_anything.utils.onnx import SamOnnxModel


def _inputs(seed: int, points: list[tuple[float, float, float]], size: tuple[float, float]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "image_embeddings": rng.standard_normal((1, 256, 64, 64)).astype(np.float32),
        "point_coords": np.array([[[x, y] for x, y, _ in points]], dtype=np.float32),
        "point_labels": np.array([[label for _, _, label in points]], dtype=np.float32),
        "mask_input": np.zeros((1, 1, 256, 256), dtype=np.float32),
        "has_mask_input": np.array([0.0], dtype=np.float32),
        "orig_im_size": np.array(size, dtype=np.float32),
    }


CASES = [
    (1, [(300.0, 200.0, 1.0)], (480.0, 640.0)),  # one click, no padding point (as the browser plugin sends)
    (2, [(100.0, 120.0, 2.0), (600.0, 700.0, 3.0), (400.0, 500.0, 1.0)], (1500.0, 2250.0)),  # box + click
    (3, [(10.0, 10.0, 1.0), (900.0, 400.0, 0.0), (0.0, 0.0, -1.0)], (333.0, 517.0)),  # with a pad point
]


@pytest.mark.parametrize(("seed", "points", "size"), CASES)
def test_onnx_decoder_matches_pytorch(
    tiny_decoder: Path,
    tiny_predictor: Any,
    seed: int,
    points: list[tuple[float, float, float]],
    size: tuple[float, float],
) -> None:
    feeds = _inputs(seed, points, size)
    session = ort.InferenceSession(str(tiny_decoder), providers=["CPUExecutionProvider"])
    got = dict(zip(CVAT_OUTPUTS, session.run(None, feeds), strict=True))
    torch_model = CvatSamOnnxModel(tiny_predictor.model)
    want = dict(
        zip(
            CVAT_OUTPUTS,
            (t.numpy() for t in torch_model(**{k: torch.from_numpy(v) for k, v in feeds.items()})),
            strict=True,
        )
    )

    assert got["masks"].dtype == np.uint8
    for key in ("xtl", "ytl", "xbr", "ybr"):
        assert got[key].dtype == np.int64 and got[key].shape == ()
        assert int(got[key]) == int(want[key])
    assert got["masks"].shape == want["masks"].shape
    assert got["masks"].shape[2:] == (int(got["ybr"]) - int(got["ytl"]) + 1, int(got["xbr"]) - int(got["xtl"]) + 1)
    assert np.mean(got["masks"] != want["masks"]) < 1e-4
    np.testing.assert_allclose(got["iou_predictions"], want["iou_predictions"], atol=1e-4)
    np.testing.assert_allclose(got["low_res_masks"], want["low_res_masks"], atol=1e-3)


def test_cvat_crop_is_the_tight_box_of_the_upstream_mask(tiny_decoder: Path, tiny_predictor: Any) -> None:
    """The CVAT patch = upstream SamOnnxModel output thresholded at 0 and cropped to its bounding box."""
    feeds = _inputs(5, [(200.0, 300.0, 1.0)], (600.0, 800.0))
    upstream = SamOnnxModel(tiny_predictor.model, return_single_mask=True)
    logits = upstream(**{k: torch.from_numpy(v) for k, v in feeds.items()})[0].numpy()[0, 0]
    full = logits > 0
    rows, cols = np.flatnonzero(full.any(1)), np.flatnonzero(full.any(0))
    assert rows.size, "the tiny model should give a non-empty mask for this input"
    session = ort.InferenceSession(str(tiny_decoder), providers=["CPUExecutionProvider"])
    masks, _, _, xtl, ytl, xbr, ybr = session.run(None, feeds)
    assert (int(xtl), int(ytl), int(xbr), int(ybr)) == (cols[0], rows[0], cols[-1], rows[-1])
    crop = full[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    assert np.mean(masks[0, 0].astype(bool) != crop) < 1e-4


def test_empty_mask_gives_an_empty_crop(tiny_predictor: Any) -> None:
    model = CvatSamOnnxModel(tiny_predictor.model)
    model.model.mask_threshold = 1e9  # nothing passes
    try:
        feeds = _inputs(1, [(300.0, 200.0, 1.0)], (48.0, 64.0))
        masks, _, _, xtl, ytl, xbr, ybr = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    finally:
        model.model.mask_threshold = 0.0
    assert tuple(masks.shape) == (1, 1, 0, 0)
    assert [int(v) for v in (xtl, ytl, xbr, ybr)] == [0, 0, -1, -1]


def test_cli_exports_upstream_and_quantised_and_skips_when_up_to_date(
    tiny_checkpoint: Path, tmp_path: Path, capsys: Any
) -> None:
    out, upstream = tmp_path / "d.onnx", tmp_path / "u.onnx"
    args = [
        "export-decoder",
        "--checkpoint",
        str(tiny_checkpoint),
        "--variant",
        "vit_tiny",
        "--output",
        str(out),
        "--upstream-output",
        str(upstream),
        "--quantize",
    ]
    assert main(args) == 0
    assert "wrote" in capsys.readouterr().out
    session = ort.InferenceSession(str(upstream), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == UPSTREAM_OUTPUTS
    quantized_ops = {n.op_type for n in __import__("onnx").load(str(out)).graph.node}
    assert quantized_ops & {"DynamicQuantizeLinear", "MatMulInteger", "DequantizeLinear"}
    assert read_stamp(out) is not None
    mtime = out.stat().st_mtime_ns
    assert main(args) == 0
    assert "skipped" in capsys.readouterr().out
    assert out.stat().st_mtime_ns == mtime


def test_cli_reports_a_variant_mismatch(tiny_checkpoint: Path, tmp_path: Path, capsys: Any) -> None:
    args = [
        "export-decoder",
        "--checkpoint",
        str(tiny_checkpoint),
        "--variant",
        "vit_b",
        "--output",
        str(tmp_path / "d.onnx"),
    ]
    assert main(args) == 1
    assert "does not fit variant 'vit_b'" in capsys.readouterr().err
    assert not (tmp_path / "d.onnx").exists()
