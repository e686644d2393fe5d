"""What CVAT's browser plugin does with a blob, next to what PyTorch computes for the same clicks.

Both the e2e suite (encoder processes) and the kind suite (encoder pods) assert that a blob from the gateway,
decoded with the encoder's own `/v1/decoder.onnx`, gives the mask of upstream SAM in PyTorch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch


def assert_blob_decodes_to_the_pytorch_mask(
    embedding: np.ndarray,
    decoder_onnx: bytes,
    rgb: np.ndarray,
    pos: list[list[float]],
    neg: list[list[float]],
    checkpoint: Path,
    embedding_tolerance: float,
) -> None:
    from sam_inference.torch_models.model import load_sam
    from segment_anything import SamPredictor
    from segment_anything.utils.onnx import SamOnnxModel

    # The browser plugin's decoding (cvat-protocol §6.3): no padding point, coordinates scaled by 1024/max(W,H).
    h, w = rgb.shape[:2]
    coords = np.array([pos + neg], dtype=np.float32) * (1024 / max(w, h))
    labels = np.array([[1] * len(pos) + [0] * len(neg)], dtype=np.float32)
    session = ort.InferenceSession(decoder_onnx, providers=["CPUExecutionProvider"])
    masks, _, _, xtl, ytl, xbr, ybr = session.run(
        None,
        {
            "image_embeddings": embedding,
            "point_coords": coords,
            "point_labels": labels,
            "orig_im_size": np.array([h, w], dtype=np.float32),
            "mask_input": np.zeros((1, 1, 256, 256), dtype=np.float32),
            "has_mask_input": np.zeros(1, np.float32),
        },
    )
    assert masks.dtype == np.uint8

    # The same inputs through the PyTorch model: SamPredictor's embedding, upstream SamOnnxModel's decoder.
    sam = load_sam("vit_tiny", checkpoint)
    predictor = SamPredictor(sam)
    predictor.set_image(rgb)
    reference = predictor.get_image_embedding()
    np.testing.assert_allclose(embedding, reference.numpy(), rtol=embedding_tolerance, atol=embedding_tolerance)
    with torch.no_grad():
        logits, _, _ = SamOnnxModel(sam, return_single_mask=True)(
            reference,
            torch.from_numpy(coords),
            torch.from_numpy(labels),
            torch.zeros(1, 1, 256, 256),
            torch.zeros(1),
            torch.tensor([h, w], dtype=torch.float32),
        )
    full = (logits[0, 0] > 0).numpy()
    ys, xs = np.nonzero(full)
    assert len(ys), "the reference mask is empty: choose another click"
    assert (int(xtl), int(ytl), int(xbr), int(ybr)) == (xs.min(), ys.min(), xs.max(), ys.max())
    expected = full[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.uint8)
    got = masks[0, 0]
    assert got.shape == expected.shape
    agreement = (got == expected).mean()
    assert agreement > 0.999, agreement
