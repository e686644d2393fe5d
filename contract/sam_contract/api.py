"""The SamModel custom resource's coordinates (``crds/sammodels.yaml`` is the source of truth)."""

from __future__ import annotations

__all__ = ["API_VERSION", "GROUP", "KIND", "PLURAL", "SHORT_NAME", "VERSION"]

GROUP = "samoperator.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
PLURAL = "sammodels"
KIND = "SamModel"
SHORT_NAME = "sam"
