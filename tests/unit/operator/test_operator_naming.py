"""naming: child and PVC names are DNS-1123 labels, stable, and distinct inputs never collide."""

from __future__ import annotations

import pytest
from sam_operator.naming import child_name, dns1123_label, instance_label_value, is_dns1123_label, pvc_name


def test_short_names_are_prefixed_verbatim() -> None:
    assert child_name("x") == "sam-x"
    assert pvc_name("x") == "sam-x-model-cache"


@pytest.mark.parametrize("length", [1, 58, 59, 60, 63, 100, 253])
def test_names_of_any_length_fit_in_a_label(length: int) -> None:
    name = "a" * length
    for derived in (child_name(name), pvc_name(name)):
        assert is_dns1123_label(derived), derived
        assert len(derived) <= 63


def test_truncated_names_keep_their_suffix_and_get_a_hash() -> None:
    long = "very-long-model-name-" * 4
    assert pvc_name(long).endswith("-model-cache")
    assert child_name(long).startswith("sam-very-long-model-name")
    assert child_name(long) != child_name(long + "x")
    assert child_name(long) == child_name(long)


def test_dotted_names_become_labels_without_colliding_with_dashed_ones() -> None:
    assert is_dns1123_label(child_name("a.b"))
    assert child_name("a.b") != child_name("a-b")


def test_dns1123_label_never_ends_with_a_dash_before_the_hash() -> None:
    label = dns1123_label("sam-", "x" * 49 + "-" + "y" * 20)
    assert "--" not in label and is_dns1123_label(label)


def test_instance_label_is_the_name_when_it_fits() -> None:
    assert instance_label_value("vit-h") == "vit-h"
    assert len(instance_label_value("n" * 80)) <= 63
