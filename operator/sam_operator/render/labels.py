"""Standard ``app.kubernetes.io/*`` labels of encoder children, and the immutable selector subset.

The selector uses name + instance + component only, because a Deployment's selector can never change
(``docs/architecture.md``). Pure.
"""

from __future__ import annotations

from typing import Any

from sam_contract.labels import ENCODER_COMPONENT, ENCODER_NAME, MANAGED_BY, PART_OF

from sam_operator.naming import child_name, instance_label_value

__all__ = ["ENCODER_COMPONENT", "ENCODER_NAME", "child_metadata", "labels", "selector_labels", "selector_string"]


def selector_labels(cr_name: str) -> dict[str, str]:
    """The labels that select SamModel ``cr_name``'s encoder pods (never change them)."""
    return {
        "app.kubernetes.io/name": ENCODER_NAME,
        "app.kubernetes.io/instance": instance_label_value(cr_name),
        "app.kubernetes.io/component": ENCODER_COMPONENT,
    }


def labels(cr_name: str) -> dict[str, str]:
    """Labels of every child object and of the encoder pods."""
    return {
        **selector_labels(cr_name),
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": PART_OF,
    }


def selector_string(cr_name: str) -> str:
    """``selector_labels`` as a label-selector string (``status.selector``, the scale subresource's selector)."""
    return ",".join(f"{key}={value}" for key, value in selector_labels(cr_name).items())


def child_metadata(cr_name: str, namespace: str, extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    """``metadata`` of SamModel ``cr_name``'s child object in ``namespace``: its name and the standard labels
    (after ``extra_labels``, which cannot override them)."""
    return {
        "name": child_name(cr_name),
        "namespace": namespace,
        "labels": {**(extra_labels or {}), **labels(cr_name)},
    }
