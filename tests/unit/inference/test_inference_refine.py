"""Prompt-prefix refinement: the store on its own, the service feeding the previous click's low-res mask, and
the chain through HTTP equal to the refinement chain in PyTorch for both families."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sam_inference.predictor import LOW_RES_SHAPE, Prompts
from sam_inference.refine import RefinementStore, prefixes, prompt_key
from unit.inference.conftest import ClientFactory
from unit.inference.sam_fakes import FakePredictor, cvat_body, image_array, image_bytes, metric_value, shape_to_mask

A, B, C = (10.0, 20.0), (30.5, 40.25), (50.0, 5.0)


def _low(value: float) -> np.ndarray:
    return np.full(LOW_RES_SHAPE, value, dtype=np.float32)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_known_set_plus_one_click_finds_the_sets_mask_in_any_order() -> None:
    store = RefinementStore(ttl_s=60, max_entries=8)
    store.remember("img", Prompts(points=(A, B), labels=(1, 0)), _low(1))
    bigger = Prompts(points=(A, C, B), labels=(1, 1, 0))  # CVAT: positives first, the new one inside the list
    prior = store.prior("img", bigger)
    assert prior is not None and float(prior[0, 0, 0]) == 1
    assert store.prior("other-image", bigger) is None
    assert store.prior("img", Prompts(points=(A, C), labels=(1, 1))) is None  # {A} was never decoded
    assert store.prior("img", Prompts(points=(A, B), labels=(1, 1))) is None  # B's label differs


def test_the_box_is_part_of_the_set_and_a_first_click_has_no_prior() -> None:
    store = RefinementStore(ttl_s=60, max_entries=8)
    box = (1.0, 2.0, 3.0, 4.0)
    store.remember("img", Prompts(box=box), _low(2))
    assert store.prior("img", Prompts(points=(A,), labels=(1,), box=box)) is not None
    assert store.prior("img", Prompts(points=(A,), labels=(1,))) is None
    assert prefixes(Prompts(points=(A,), labels=(1,))) == []
    assert prompt_key(Prompts(points=(A, B), labels=(1, 0))) == prompt_key(Prompts(points=(B, A), labels=(0, 1)))


def test_entries_expire_and_are_bounded() -> None:
    clock = Clock()
    store = RefinementStore(ttl_s=10, max_entries=2, clock=clock)
    one = Prompts(points=(A,), labels=(1,))
    store.remember("img", one, _low(1))
    clock.now = 9.9
    assert store.prior("img", Prompts(points=(A, B), labels=(1, 1))) is not None
    clock.now = 10.0
    assert store.prior("img", Prompts(points=(A, B), labels=(1, 1))) is None and len(store) == 0
    for name in ("a", "b", "c"):
        store.remember(name, one, _low(1))
    assert len(store) == 2 and store.prior("a", Prompts(points=(A, B), labels=(1, 1))) is None


def test_disabled_store_keeps_nothing() -> None:
    store = RefinementStore(ttl_s=0, max_entries=8)
    store.remember("img", Prompts(points=(A,), labels=(1,)), _low(1))
    assert len(store) == 0 and store.prior("img", Prompts(points=(A, B), labels=(1, 1))) is None


async def test_the_service_feeds_the_previous_clicks_mask(make_client: ClientFactory) -> None:
    fake = FakePredictor()
    client = await make_client(fake, mode="masks")
    image = image_bytes(seed=31)
    for body in (
        {"pos_points": [list(A)]},
        {"pos_points": [list(A)], "neg_points": [list(B)]},
        {"pos_points": [list(A), list(C)], "neg_points": [list(B)]},
        {"pos_points": [list(C)]},  # a new interaction: no prior
    ):
        assert (await client.post("/", json=cvat_body(image, **body))).status == 200
    first, second, third, fourth = fake.mask_inputs
    assert first is None and fourth is None
    assert second is not None and float(second[0, 0, 0]) == 1  # the fake's low-res: its decode number
    assert third is not None and float(third[0, 0, 0]) == 2
    metrics = await (await client.get("/metrics")).text()
    assert metric_value(metrics, "sam_inference_refined_decodes_total") == 2


async def test_refinement_off_decodes_every_request_alone(make_client: ClientFactory) -> None:
    fake = FakePredictor()
    client = await make_client(fake, mode="masks", refine_ttl_s=0)
    image = image_bytes(seed=32)
    for body in ({"pos_points": [list(A)]}, {"pos_points": [list(A), list(B)]}):
        assert (await client.post("/", json=cvat_body(image, **body))).status == 200
    assert fake.mask_inputs == [None, None]


CLICKS = [((40.0, 30.0), 1), ((100.0, 60.0), 0), ((70.0, 45.0), 1), ((20.0, 80.0), 0)]


def _cvat_prompts(clicks: list[tuple[tuple[float, float], int]]) -> tuple[dict[str, Any], Prompts]:
    """CVAT's body for these clicks and the Prompts the service decodes (positives, then negatives)."""
    pos = [list(p) for p, label in clicks if label == 1]
    neg = [list(p) for p, label in clicks if label == 0]
    points = tuple(tuple(p) for p in pos + neg)
    return {"pos_points": pos, "neg_points": neg}, Prompts(points=points, labels=(1,) * len(pos) + (0,) * len(neg))  # type: ignore[arg-type]


def _reference_chain(family: str, checkpoint: Path, image: np.ndarray, refine: bool = True) -> list[np.ndarray]:
    """The same clicks in PyTorch: each predict() gets the previous best mask's low-res logits (`refine`)."""
    from sam_inference.torch_models.sam_predictor import use_multimask

    if family == "sam":
        from sam_inference.torch_models.model import load_sam
        from segment_anything import SamPredictor

        predictor: Any = SamPredictor(load_sam("vit_tiny", checkpoint))
    else:
        from sam2.sam2_image_predictor import SAM2ImagePredictor
        from sam_inference.torch_models.sam2_model import load_sam2

        predictor = SAM2ImagePredictor(load_sam2("hiera_micro", checkpoint))
    predictor.set_image(image)
    masks_out, low = [], None
    for k in range(1, len(CLICKS) + 1):
        _, prompts = _cvat_prompts(CLICKS[:k])
        masks, scores, low_res = predictor.predict(
            point_coords=np.array(prompts.points, dtype=np.float32),
            point_labels=np.array(prompts.labels),
            mask_input=low,
            multimask_output=use_multimask(prompts),
        )
        best = int(np.argmax(scores))
        masks_out.append(masks[best] > 0)
        low = low_res[best][None] if refine else None
    return masks_out


@pytest.fixture(scope="module")
def micro_sam2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sam_inference.__main__ import main

    path = tmp_path_factory.mktemp("refine-sam2") / "sam2.1_hiera_micro.pt"
    assert main(["make-tiny", "--family", "sam2", "--output", str(path), "--seed", "1"]) == 0
    return path


@pytest.mark.parametrize("family", ["sam", "sam2"])
async def test_the_click_chain_over_http_equals_the_pytorch_refinement_chain(
    make_client: ClientFactory, tiny_checkpoint: Path, micro_sam2: Path, family: str
) -> None:
    checkpoint, variant = (tiny_checkpoint, "vit_tiny") if family == "sam" else (micro_sam2, "hiera_micro")
    settings = {"model_family": family, "model_variant": variant, "checkpoint_path": checkpoint}
    if family == "sam":  # float32 throughout: `auto` may run OpenVINO's bfloat16 products (an AMX CPU)
        settings["mask_decoder"] = "onnxruntime"
    client = await make_client(None, mode="masks", precision="float32", engine="torch", **settings)
    image = image_bytes(width=140, height=100, seed=33)
    expected = _reference_chain(family, checkpoint, image_array(image))
    unrefined = _reference_chain(family, checkpoint, image_array(image), refine=False)
    assert any(not np.array_equal(a, b) for a, b in zip(expected, unrefined, strict=True))  # refinement shows
    for k, want in enumerate(expected, start=1):
        body, _ = _cvat_prompts(CLICKS[:k])
        shapes = (await (await client.post("/", json=cvat_body(image, **body))).json())["shapes"]
        got = shape_to_mask(shapes[0], 100, 140) if shapes else np.zeros((100, 140), dtype=bool)
        union = np.logical_or(got, want).sum()
        iou = 1.0 if union == 0 else float(np.logical_and(got, want).sum() / union)
        assert iou == 1.0, f"click {k}: IoU {iou:.4f} against the PyTorch chain"
    metrics = await (await client.get("/metrics")).text()
    assert metric_value(metrics, "sam_inference_refined_decodes_total") == len(CLICKS) - 1
