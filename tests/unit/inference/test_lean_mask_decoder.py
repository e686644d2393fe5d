"""The lean mask decoder (low-rank cross attention, channel-last upscaling) is upstream's function (issue 13):
its low-res logits and predicted IoU equal upstream's export (`SamOnnxModel`, single mask) within float rounding,
in both attention forms and both score layouts, with and without a mask input, for clicks and boxes, on the tiny
model and on ViT-B. The first click's graph that reads its first block's inputs prepared once per embedding
(`FirstClickDecoder`) is the graph that reads image tokens, operation for operation."""

from __future__ import annotations

import pytest
import torch
from sam_inference.torch_models.lean_mask_decoder import (
    FirstClickDecoder,
    GraphForm,
    LeanLowResDecoder,
    as_tokens,
    low_rank_max_points,
)
from sam_inference.torch_models.tiny import build_random_sam
from segment_anything.modeling import Sam
from segment_anything.utils.onnx import SamOnnxModel


@pytest.fixture(scope="module", params=["vit_tiny", "vit_b"])
def model(request: pytest.FixtureRequest) -> Sam:
    return build_random_sam(request.param, seed=3).eval()


def _prompt(generator: torch.Generator, clicks: int, box: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Upstream export's point tokens: clicks labelled 0/1, then a box's corners (2, 3) or a padding point (-1)."""
    coords = torch.rand(1, clicks + 2 if box else clicks + 1, 2, generator=generator) * 1024
    labels = torch.randint(0, 2, (1, coords.shape[1]), generator=generator).float()
    if box:
        labels[0, -2:] = torch.tensor([2.0, 3.0])
    else:
        labels[0, -1] = -1.0
    return coords, labels


@pytest.mark.parametrize(("low_rank", "tokens_major"), [(True, False), (True, True), (False, False), (False, True)])
@pytest.mark.parametrize(
    ("clicks", "box", "has_mask"), [(1, False, 0.0), (1, False, 1.0), (2, True, 1.0), (14, False, 1.0)]
)
def test_lean_decoder_equals_upstream_export(
    model: Sam, low_rank: bool, tokens_major: bool, clicks: int, box: bool, has_mask: float
) -> None:
    generator = torch.Generator().manual_seed(clicks)
    embedding = torch.randn(1, 256, 64, 64, generator=generator)
    coords, labels = _prompt(generator, clicks, box)
    mask_input = torch.randn(1, 1, 256, 256, generator=generator) * 4
    has_mask_input = torch.tensor([has_mask])
    upstream = SamOnnxModel(model, return_single_mask=True).eval()
    with torch.no_grad():
        _, want_score, want_mask = upstream(
            embedding, coords, labels, mask_input, has_mask_input, torch.tensor([1024.0, 1024.0])
        )
    lean = LeanLowResDecoder(model, low_rank, GraphForm(tokens_major=tokens_major))
    score, mask = lean(embedding, coords, labels, mask_input, has_mask_input)
    assert mask.shape == want_mask.shape == (1, 1, 256, 256)
    torch.testing.assert_close(score, want_score, rtol=0, atol=1e-5)
    torch.testing.assert_close(mask, want_mask, rtol=0, atol=1e-5 * max(1.0, float(want_mask.abs().max())))


def test_low_rank_form_is_chosen_while_it_takes_fewer_flops(model: Sam) -> None:
    # 8 heads x (1 IoU + 4 mask tokens + 11 points) = 128, the internal dim: one more point and it costs more.
    assert low_rank_max_points(model) == 11


@pytest.mark.parametrize("low_rank", [True, False])
@pytest.mark.parametrize("mask_prompt", [False, True])
def test_a_graph_for_one_mask_prompt_is_upstream_at_the_has_mask_input_it_implies(
    model: Sam, low_rank: bool, mask_prompt: bool
) -> None:
    """The runtimes' graphs: without a mask input (a first click: no mask downscaling) and with one always given,
    reading the embedding as image tokens (`token_input`)."""
    generator = torch.Generator().manual_seed(7)
    embedding = torch.randn(1, 256, 64, 64, generator=generator)
    coords, labels = _prompt(generator, 2, False)
    mask_input = torch.randn(1, 1, 256, 256, generator=generator) * 4
    upstream = SamOnnxModel(model, return_single_mask=True).eval()
    with torch.no_grad():
        _, want_score, want_mask = upstream(
            embedding, coords, labels, mask_input, torch.tensor([float(mask_prompt)]), torch.tensor([1024.0, 1024.0])
        )
    lean = LeanLowResDecoder(model, low_rank, GraphForm(tokens_major=True), mask_prompt=mask_prompt, token_input=True)
    tokens = as_tokens(embedding).contiguous()
    assert tokens.shape == (1, 64 * 64, 256)
    score, mask = lean(tokens, coords, labels, mask_input if mask_prompt else None)
    torch.testing.assert_close(score, want_score, rtol=0, atol=1e-5)
    torch.testing.assert_close(mask, want_mask, rtol=0, atol=1e-5 * max(1.0, float(want_mask.abs().max())))


@pytest.mark.parametrize("bf16_products", [False, True])
def test_the_first_click_graph_on_prepared_inputs_is_the_first_click_graph_on_tokens(
    model: Sam, bf16_products: bool
) -> None:
    form = GraphForm(tokens_major=True, bf16_products=bf16_products)
    generator = torch.Generator().manual_seed(11)
    tokens = as_tokens(torch.randn(1, 256, 64, 64, generator=generator)).contiguous()
    on_tokens = LeanLowResDecoder(model, True, form, mask_prompt=False, token_input=True)
    first_click = FirstClickDecoder(model, form)
    keys, image, positioned = first_click.prepare(tokens)
    assert image.dtype == positioned.dtype == (torch.bfloat16 if bf16_products else torch.float32)
    for clicks in (1, 3):
        coords, labels = _prompt(generator, clicks, box=clicks == 3)
        want_score, want_mask = on_tokens(tokens, coords, labels)
        score, mask = first_click(keys, image, positioned, coords, labels)
        torch.testing.assert_close(score, want_score, rtol=0, atol=0)
        torch.testing.assert_close(mask, want_mask, rtol=0, atol=0)
