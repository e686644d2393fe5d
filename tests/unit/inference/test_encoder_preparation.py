"""`sam-inference prepare-encoder` (the init container of a CPU SamModel on the shared PVC) and what `engine: auto`
then runs: openvino where the checkpoint's IR is prepared, fused where it is not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sam_inference.__main__ import main
from sam_inference.torch_models.engine.openvino_encoder import is_prepared
from sam_inference.torch_models.preparation import GIB, memory_limit_bytes, skip_reason
from sam_inference.torch_models.sam_predictor import SamEncoderPredictor
from unit.inference.scenes import make_scene


def _meminfo(tmp_path: Path, kib: int) -> Path:
    path = tmp_path / "meminfo"
    path.write_text(f"MemTotal:       {kib} kB\nMemFree:        1 kB\n")
    return path


def test_the_memory_limit_is_the_cgroups_else_the_machines(tmp_path: Path) -> None:
    meminfo = _meminfo(tmp_path, 16 * 1024 * 1024)
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.max").write_text("2147483648\n")
    assert memory_limit_bytes(v2, meminfo) == 2 * GIB
    (v2 / "memory.max").write_text("max\n")  # no limit: the machine's memory
    assert memory_limit_bytes(v2, meminfo) == 16 * GIB
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text(str(6 * GIB))
    assert memory_limit_bytes(v1, meminfo) == 6 * GIB
    (v1 / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712")  # v1's "unlimited"
    assert memory_limit_bytes(v1, meminfo) == 16 * GIB
    assert memory_limit_bytes(tmp_path / "none", tmp_path / "no-meminfo") is None


def test_only_measured_variants_are_prepared_and_only_within_their_memory() -> None:
    assert skip_reason("vit_b", 8 * GIB) is None
    assert skip_reason("vit_b", None) is None
    reason = skip_reason("vit_b", 4 * GIB)
    assert reason is not None and "6.5 GiB" in reason and "4.0 GiB" in reason
    assert skip_reason("vit_tiny", 2 * GIB) is None
    unmeasured = skip_reason("vit_h", 64 * GIB)
    assert unmeasured is not None and "never measured" in unmeasured


def test_prepare_encoder_makes_the_ir_that_auto_then_runs(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = tmp_path / "sam_vit_tiny.pth"
    checkpoint.write_bytes(tiny_checkpoint.read_bytes())
    before = SamEncoderPredictor("vit_tiny", checkpoint, device="cpu", precision="auto", engine="auto")
    before.load()
    assert before.plan is not None and before.plan.engine == "fused"  # nothing prepared yet
    precision = before.plan.precision

    assert main(["prepare-encoder", "--checkpoint", str(checkpoint), "--variant", "vit_tiny"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("wrote ") and is_prepared(checkpoint, "vit_tiny", precision), first
    assert main(["prepare-encoder", "--checkpoint", str(checkpoint), "--variant", "vit_tiny"]) == 0
    assert capsys.readouterr().out.startswith("up to date: ")

    after = SamEncoderPredictor("vit_tiny", checkpoint, device="cpu", precision="auto", engine="auto")
    after.load()
    assert after.plan is not None and after.plan.describe() == f"openvino/{precision} on cpu"
    explicit = SamEncoderPredictor("vit_tiny", checkpoint, device="cpu", precision=precision, engine="openvino")
    explicit.load()  # reads the same IR
    image = make_scene(3, 640, 480).image
    ours = after.embed_batch([after.preprocess(image)])[0].image_embed
    np.testing.assert_array_equal(ours, explicit.embed_batch([explicit.preprocess(image)])[0].image_embed)
    fused = before.embed_batch([before.preprocess(image)])[0].image_embed
    cosine = float(np.dot(ours.ravel(), fused.ravel()) / (np.linalg.norm(ours) * np.linalg.norm(fused)))
    assert cosine >= 0.99, cosine


def test_prepare_encoder_skips_what_it_cannot_prepare_and_still_succeeds(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = tmp_path / "sam_vit_tiny.pth"
    checkpoint.write_bytes(tiny_checkpoint.read_bytes())
    from sam_inference.torch_models import preparation

    monkeypatch.setattr(preparation, "memory_limit_bytes", lambda: 512 * 1024**2)
    assert main(["prepare-encoder", "--checkpoint", str(checkpoint), "--variant", "vit_tiny"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("not prepared (preparing vit_tiny needs about 2.0 GiB, the memory limit is 0.5 GiB)")
    assert not (tmp_path / "openvino").exists()
    assert main(["prepare-encoder", "--checkpoint", str(checkpoint), "--variant", "hiera_t"]) == 0
    assert capsys.readouterr().out.startswith("skipped: no OpenVINO encoder for SAM 2")
