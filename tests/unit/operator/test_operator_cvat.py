"""cvat: function names, display names, Nuclio annotations exactly as CVAT reads them, status.cvat."""

from __future__ import annotations

from typing import Any

from sam_operator.cvat import (
    build_annotations,
    derive_description,
    derive_display_name,
    derive_function_name,
    derive_warnings,
)
from sam_operator.resources import OFFICIAL_VIT_H_SHA256, SamModel, parse_sammodel

OTHER_SHA = "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"


def model(
    variant: str = "vit_h", sha: str = OFFICIAL_VIT_H_SHA256, name: str = "m", ns: str = "cvat", **cvat: Any
) -> SamModel:
    parsed = parse_sammodel(
        {
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "model": {"variant": variant, "checkpoint": {"url": "https://x/y.pth", "sha256": sha}},
                "cvat": cvat,
            },
        }
    )
    assert isinstance(parsed, SamModel), parsed
    return parsed


def test_official_vit_h_in_embedding_mode_gets_the_stock_name() -> None:
    m = model()
    assert derive_function_name(m) == "pth-facebookresearch-sam-vit-h"
    assert derive_display_name(m) == "Segment Anything"
    assert derive_warnings(m) == []


def test_other_checkpoints_variants_and_modes_get_a_derived_name() -> None:
    assert derive_function_name(model(sha=OTHER_SHA)) == "sam-cvat-m"
    assert derive_function_name(model(variant="vit_b", sha=OTHER_SHA)) == "sam-cvat-m"
    assert derive_function_name(model(mode="masks")) == "sam-cvat-m"
    assert derive_display_name(model(variant="vit_b", mode="masks")) == "Segment Anything ViT-B (cvat/m)"


def test_explicit_names_win() -> None:
    m = model(variant="vit_b", mode="masks", functionName="my-sam", displayName="Mine")
    assert (derive_function_name(m), derive_display_name(m)) == ("my-sam", "Mine")


def test_derived_names_are_dns_labels_even_for_long_names() -> None:
    name = derive_function_name(model(mode="masks", name="n" * 63, ns="namespace" * 7))
    assert len(name) <= 63 and name.startswith("sam-")


def test_embedding_mode_under_a_non_stock_name_warns() -> None:
    (warning,) = derive_warnings(model(variant="vit_b", sha=OTHER_SHA))
    assert "spec.cvat.mode" in warning and "pth-facebookresearch-sam-vit-h" in warning
    assert derive_warnings(model(variant="vit_b", sha=OTHER_SHA, mode="masks")) == []


def test_annotations_match_the_stock_function_exactly() -> None:
    assert build_annotations(model()) == {
        "name": "Segment Anything",
        "version": "2",
        "type": "interactor",
        "spec": "",
        "min_pos_points": "0",
        "min_neg_points": "0",
        "startswith_box_optional": "true",
        "animated_gif": "https://raw.githubusercontent.com/cvat-ai/cvat/develop/site/content/en/images/hrnet_example.gif",
        "help_message": "The interactor allows to get a mask of an object using at least one positive, "
        "and any negative points inside it",
    }


def test_annotations_are_all_strings_and_never_false() -> None:
    for m in (model(), model(mode="masks"), model(variant="vit_b", sha=OTHER_SHA)):
        annotations = build_annotations(m)
        assert all(isinstance(v, str) for v in annotations.values())
        assert "false" not in {v.lower() for v in annotations.values()}
        assert annotations["type"] == "interactor"


def test_description_names_variant_and_mode() -> None:
    assert derive_description(model()) == "Interactive object segmentation with Segment-Anything (vit_h)"
    assert derive_description(model(mode="masks")).endswith("(vit_h, server-side masks)")
