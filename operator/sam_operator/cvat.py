"""What a SamModel looks like to CVAT: function name, display name, Nuclio annotations, description, port.

Follows ``docs/cvat-protocol.md`` §2.1 (the stock SAM function's metadata), §3.3 (fields CVAT reads: all
annotation values are strings, and a boolean annotation is *omitted* rather than ``"false"`` because
``bool("false")`` is True) and §8 (drop-in name vs generic interactor). Pure; :func:`derive_cvat_status` is
``status.cvat`` (written by ``status``, read back by the gateway through the same ``sam_contract.cvat`` type).
The direct-mode port is decided by ``ports.choose_http_port``.
"""

from __future__ import annotations

from sam_contract.cvat import CvatStatus

from sam_operator.naming import dns1123_label
from sam_operator.resources import OFFICIAL_VIT_H_SHA256, STOCK_CVAT_FUNCTION_NAME, SamModel

__all__ = [
    "ANIMATED_GIF",
    "STOCK_DESCRIPTION",
    "STOCK_DISPLAY_NAME",
    "build_annotations",
    "derive_cvat_status",
    "derive_description",
    "derive_display_name",
    "derive_function_name",
    "derive_warnings",
    "uses_stock_plugin",
]

STOCK_DISPLAY_NAME = "Segment Anything"
STOCK_DESCRIPTION = "Interactive object segmentation with Segment-Anything"
ANIMATED_GIF = "https://raw.githubusercontent.com/cvat-ai/cvat/develop/site/content/en/images/hrnet_example.gif"
_HELP_EMBEDDING = (
    "The interactor allows to get a mask of an object using at least one positive, and any negative points inside it"
)
_HELP_MASKS = (
    "The interactor allows to get a mask of an object using a bounding box, or at least one positive and any "
    "negative points inside it; masks are computed on the server"
)
_VARIANT_TITLES = {
    **{"vit_b": "ViT-B", "vit_l": "ViT-L", "vit_h": "ViT-H", "vit_tiny": "ViT-Tiny"},
    **{"hiera_t": "2.1 Hiera-T", "hiera_s": "2.1 Hiera-S", "hiera_b+": "2.1 Hiera-B+", "hiera_l": "2.1 Hiera-L"},
    "hiera_micro": "2.1 Hiera-Micro",
}


def _is_official_vit_h(model: SamModel) -> bool:
    return model.spec.model.variant == "vit_h" and model.spec.model.checkpoint.sha256 == OFFICIAL_VIT_H_SHA256


def derive_function_name(model: SamModel) -> str:
    """CVAT function id: ``spec.cvat.functionName`` if set; else the stock name for the official ViT-H checkpoint
    in embedding mode (what CVAT's browser plugin decodes); else ``sam-<namespace>-<name>`` (DNS-1123 label,
    hash-suffixed past 63 characters)."""
    cvat = model.spec.cvat
    if cvat.function_name:
        return cvat.function_name
    if cvat.mode == "embedding" and _is_official_vit_h(model):
        return STOCK_CVAT_FUNCTION_NAME
    return dns1123_label("sam-", f"{model.namespace}-{model.name}")


def uses_stock_plugin(model: SamModel) -> bool:
    """Whether CVAT's stock SAM browser plugin will decode this function's embeddings."""
    return derive_function_name(model) == STOCK_CVAT_FUNCTION_NAME


def derive_display_name(model: SamModel) -> str:
    """Name in CVAT's AI tools menu: ``spec.cvat.displayName``, else "Segment Anything" for the stock function,
    else "Segment Anything <variant> (<namespace>/<name>)"."""
    if model.spec.cvat.display_name:
        return model.spec.cvat.display_name
    if uses_stock_plugin(model):
        return STOCK_DISPLAY_NAME
    variant = _VARIANT_TITLES.get(model.spec.model.variant, model.spec.model.variant)
    return f"{STOCK_DISPLAY_NAME} {variant} ({model.namespace}/{model.name})"


def derive_description(model: SamModel) -> str:
    """Nuclio ``spec.description`` (CVAT requires the key): the stock text plus variant and mode."""
    suffix = "" if model.spec.cvat.mode == "embedding" else ", server-side masks"
    return f"{STOCK_DESCRIPTION} ({model.spec.model.variant}{suffix})"


def build_annotations(model: SamModel) -> dict[str, str]:
    """The Nuclio ``metadata.annotations`` CVAT reads, all values strings; no ``"false"`` values.

    Both modes are ``interactor`` functions that accept a box alone (``min_pos_points`` 0,
    ``startswith_box_optional``), exactly like the stock function.
    """
    embedding = model.spec.cvat.mode == "embedding"
    return {
        "name": derive_display_name(model),
        "version": "2",
        "type": "interactor",
        "spec": "",
        "min_pos_points": "0",
        "min_neg_points": "0",
        "startswith_box_optional": "true",
        "animated_gif": ANIMATED_GIF,
        "help_message": _HELP_EMBEDDING if embedding else _HELP_MASKS,
    }


def derive_warnings(model: SamModel) -> list[str]:
    """Configurations that work but that stock CVAT cannot use as they are (written to ``status.cvat.warnings``)."""
    warnings: list[str] = []
    if model.spec.cvat.enabled and model.spec.cvat.mode == "embedding" and model.spec.model.family == "sam2":
        warnings.append(
            f"spec.cvat.mode embedding for spec.model.family sam2: only a CVAT built with PR #8610's SAM 2 plugin "
            f"(never merged upstream) decodes {derive_function_name(model)}'s three tensors; stock CVAT cannot, "
            "use spec.cvat.mode masks for it"
        )
    elif model.spec.cvat.enabled and model.spec.cvat.mode == "embedding" and not uses_stock_plugin(model):
        warnings.append(
            f"spec.cvat.mode embedding under the function name {derive_function_name(model)}: CVAT's stock SAM "
            f"plugin only decodes {STOCK_CVAT_FUNCTION_NAME} (official ViT-H weights), so stock CVAT cannot use "
            "these embeddings; use spec.cvat.mode masks, or a UI plugin that loads /v1/decoder.onnx"
        )
    return warnings


def derive_cvat_status(model: SamModel, http_port: int | None) -> CvatStatus:
    """``status.cvat`` of ``model``, with the direct-mode port ``reconcile`` decided (None: no port)."""
    return CvatStatus(
        enabled=model.spec.cvat.enabled,
        function_name=derive_function_name(model),
        display_name=derive_display_name(model),
        mode=model.spec.cvat.mode,
        description=derive_description(model),
        http_port=http_port if model.spec.cvat.enabled else None,
        annotations=build_annotations(model),
        warnings=derive_warnings(model),
    )
