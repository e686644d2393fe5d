"""The predictor on CUDA (marker gpu: skipped with a reason where no GPU exists)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from unit.inference.sam_fakes import image_array, image_bytes

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("engine", ["torch", "fused"])
@pytest.mark.parametrize("precision", ["float32", "bfloat16", "float16", "auto"])
def test_cuda_embedding_matches_cpu(tiny_checkpoint: Path, tiny_predictor: Any, precision: str, engine: str) -> None:
    from sam_inference.torch_models.sam_predictor import SamEncoderPredictor

    gpu = SamEncoderPredictor(
        "vit_tiny",
        tiny_checkpoint,
        device="cuda",
        precision=precision,
        engine=engine,
        warm_up_batch=2,
    )
    gpu.load()
    try:
        gpu.warm_up()
        image = image_array(image_bytes(width=300, height=200, seed=21))
        on_gpu = gpu.embed_batch([gpu.preprocess(image)])[0].image_embed
        on_cpu = tiny_predictor.embed_batch([tiny_predictor.preprocess(image)])[0].image_embed
        assert on_gpu.dtype == np.float32
        cosine = float((on_gpu * on_cpu).sum() / np.linalg.norm(on_gpu) / np.linalg.norm(on_cpu))
        assert cosine > (0.99999 if precision == "float32" else 0.99)
        stats = gpu.memory_stats()
        assert stats[("cuda:0", "allocated")] > 0 and stats[("cuda:0", "reserved")] > 0
        assert not gpu.cpu_bound
    finally:
        gpu.close()


@pytest.mark.parametrize("precision", ["float32", "bfloat16", "auto"])
def test_cuda_sam2_features_match_cpu(tmp_path: Path, precision: str) -> None:
    from sam_inference.torch_models.sam2_predictor import Sam2EncoderPredictor
    from sam_inference.torch_models.tiny import write_tiny_checkpoint

    checkpoint = tmp_path / "sam2.1_hiera_micro.pt"
    write_tiny_checkpoint(checkpoint, family="sam2")
    cpu = Sam2EncoderPredictor("hiera_micro", checkpoint, device="cpu")
    gpu = Sam2EncoderPredictor("hiera_micro", checkpoint, device="cuda", precision=precision, warm_up_batch=2)
    cpu.load()
    gpu.load()
    try:
        gpu.warm_up()
        assert gpu.compute_precision == ("bfloat16" if precision == "auto" else precision)
        image = image_array(image_bytes(width=300, height=200, seed=22))
        on_gpu = gpu.embed_batch([gpu.preprocess(image)])[0]
        on_cpu = cpu.embed_batch([cpu.preprocess(image)])[0]
        for got, want in zip(
            (on_gpu.image_embed, *on_gpu.high_res), (on_cpu.image_embed, *on_cpu.high_res), strict=True
        ):
            assert got.dtype == np.float32 and got.shape == want.shape
            cosine = float((got * want).sum() / np.linalg.norm(got) / np.linalg.norm(want))
            assert cosine > (0.99999 if precision == "float32" else 0.99)
        assert gpu.memory_stats()[("cuda:0", "allocated")] > 0
    finally:
        gpu.close()
        cpu.close()
