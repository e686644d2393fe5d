"""The SAM predictor on the tiny real-architecture model: same numbers as upstream's SamPredictor."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sam_inference.__main__ import main
from sam_inference.predictor import EMBEDDING_SHAPE, Embedding, Prompts
from sam_inference.torch_models.model import load_sam
from segment_anything import SamPredictor
from unit.inference.sam_fakes import image_array, image_bytes


@pytest.fixture(scope="module")
def reference(tiny_predictor: Any) -> SamPredictor:
    return SamPredictor(tiny_predictor.model)


def _upstream_embedding(reference: SamPredictor, image: np.ndarray) -> np.ndarray:
    reference.set_image(image)
    return reference.get_image_embedding().numpy()


def test_embedding_equals_sampredictor_get_image_embedding(tiny_predictor: Any, reference: SamPredictor) -> None:
    image = image_array(image_bytes(width=300, height=170, seed=3, fmt="JPEG"))
    ours = tiny_predictor.embed_batch([tiny_predictor.preprocess(image)])[0].image_embed
    upstream = _upstream_embedding(reference, image)
    assert ours.shape == EMBEDDING_SHAPE and ours.dtype == np.float32
    np.testing.assert_allclose(ours, upstream, rtol=0, atol=1e-6)


def test_batched_embeddings_match_single_image_embeddings(tiny_predictor: Any, reference: SamPredictor) -> None:
    images = [image_array(image_bytes(width=w, height=h, seed=s)) for w, h, s in ((90, 200, 4), (257, 64, 5))]
    batch = [f.image_embed for f in tiny_predictor.embed_batch([tiny_predictor.preprocess(i) for i in images])]
    for got, image in zip(batch, images, strict=True):
        np.testing.assert_allclose(got, _upstream_embedding(reference, image), rtol=0, atol=1e-5)
    assert not np.allclose(batch[0], batch[1])


@pytest.fixture(scope="module")
def eager_decoder(tiny_checkpoint: Path, tiny_predictor: Any) -> Any:
    """The same model with the mask decoder in PyTorch (`mask_decoder="torch"`; the CPU default is onnxruntime)."""
    from sam_inference.torch_models.sam_predictor import SamEncoderPredictor

    predictor = SamEncoderPredictor("vit_tiny", tiny_checkpoint, model=tiny_predictor.model, mask_decoder="torch")
    predictor.load()
    assert predictor._low_res_decoder is None and tiny_predictor._low_res_decoder is not None
    return predictor


@pytest.mark.parametrize("decoder", ["default", "torch"])
def test_decode_masks_equals_sampredictor_predict(
    tiny_predictor: Any, eager_decoder: Any, reference: SamPredictor, decoder: str
) -> None:
    image = image_array(image_bytes(width=200, height=120, seed=6))
    embedding = tiny_predictor.embed_batch([tiny_predictor.preprocess(image)])[0].image_embed
    predictor = tiny_predictor if decoder == "default" else eager_decoder
    reference.set_image(image)
    for prompts, multimask in (
        (Prompts(points=((50.0, 40.0),), labels=(1,)), True),
        (Prompts(points=((50.0, 40.0), (150.0, 90.0)), labels=(1, 0)), False),
        (Prompts(box=(20.0, 10.0, 120.0, 100.0)), True),
    ):
        result = predictor.decode_masks(Embedding(embedding, 120, 200), prompts)
        masks, scores, _ = reference.predict(
            np.array(prompts.points, dtype=np.float32).reshape(-1, 2) if prompts.points else None,
            np.array(prompts.labels) if prompts.points else None,
            np.array(prompts.box) if prompts.box else None,
            multimask_output=multimask,
        )
        best = int(np.argmax(scores))
        assert result.mask.shape == (120, 200)
        assert np.array_equal(result.mask, masks[best])
        assert result.score == pytest.approx(float(scores[best]), abs=1e-5)


def test_make_tiny_is_deterministic_per_seed(tmp_path: Path, tiny_sha256: str, capsys: Any) -> None:
    assert main(["make-tiny", "--output", str(tmp_path / "a.pth")]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == tiny_sha256 == hashlib.sha256((tmp_path / "a.pth").read_bytes()).hexdigest()
    assert main(["make-tiny", "--output", str(tmp_path / "b.pth"), "--seed", "1"]) == 0
    assert capsys.readouterr().out.strip() != tiny_sha256


def test_tiny_model_is_the_real_sam_architecture(tiny_predictor: Any) -> None:
    sam = tiny_predictor.model
    assert type(sam).__module__.startswith("segment_anything")
    assert sam.image_encoder.img_size == 1024
    assert len(sam.image_encoder.blocks) == 2
    assert [b.window_size for b in sam.image_encoder.blocks] == [14, 0]  # one global-attention block
    assert 4_000_000 < sum(p.numel() for p in sam.parameters()) < 7_000_000


def test_checkpoint_of_another_variant_is_rejected_with_a_clear_error(tiny_checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="does not fit variant 'vit_b'"):
        load_sam("vit_b", tiny_checkpoint)


def test_bfloat16_embedding_stays_close_to_float32(tiny_checkpoint: Path, tiny_predictor: Any) -> None:
    from sam_inference.torch_models.sam_predictor import SamEncoderPredictor

    bf16 = SamEncoderPredictor(
        "vit_tiny", tiny_checkpoint, device="cpu", precision="bfloat16", model=tiny_predictor.model
    )
    bf16.load()
    image = image_array(image_bytes(width=128, height=96, seed=8))
    low = bf16.embed_batch([bf16.preprocess(image)])[0].image_embed
    full = tiny_predictor.embed_batch([tiny_predictor.preprocess(image)])[0].image_embed
    assert low.dtype == np.float32
    cosine = float((low * full).sum() / np.linalg.norm(low) / np.linalg.norm(full))
    assert cosine > 0.99
    assert not np.array_equal(low, full)
    assert torch.get_default_dtype() == torch.float32


def test_make_tiny_variant_writes_a_random_model_of_that_size(tmp_path: Path, tiny_sha256: str, capsys: Any) -> None:
    """`--variant vit_b` (the wake-from-zero timing per model size serves it in kind): the real ViT-B, loadable."""
    assert main(["make-tiny", "--output", str(tmp_path / "t.pth"), "--variant", "vit_tiny"]) == 0
    assert capsys.readouterr().out.strip() == tiny_sha256  # the tiny default is that same variant
    assert main(["make-tiny", "--output", str(tmp_path / "b.pth"), "--variant", "vit_b"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == hashlib.sha256((tmp_path / "b.pth").read_bytes()).hexdigest()
    sam = load_sam("vit_b", tmp_path / "b.pth")
    assert len(sam.image_encoder.blocks) == 12
    assert 85_000_000 < sum(p.numel() for p in sam.parameters()) < 100_000_000
