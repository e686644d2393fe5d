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
