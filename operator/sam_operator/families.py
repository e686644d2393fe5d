"""SAM model families: their variants, the official SAM 2.1 checkpoints, and the rules that tie a family to
CVAT's mode and the encoder runtime (the CRD's CEL rules on ``spec.model`` and ``spec``, same messages).

Pure data and functions; ``resources`` applies them while parsing a spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sam_contract.models import VARIANTS

Family = Literal["sam", "sam2"]
Variant = Literal["vit_b", "vit_l", "vit_h", "vit_tiny", "hiera_t", "hiera_s", "hiera_b+", "hiera_l", "hiera_micro"]

#: The only function id CVAT PR #8610's SAM 2 browser plugin decodes (its bundled decoder is Hiera-L's).
SAM2_CVAT_FUNCTION_NAME = "pth-facebookresearch-sam2-hiera-large"


@dataclass(frozen=True)
class OfficialCheckpoint:
    url: str
    sha256: str
    size: int


_SAM2_1 = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
#: Meta's SAM 2.1 checkpoints (2024-09-29). Sizes and sha256 from Hugging Face Git-LFS pointers of several
#: independent re-uploads that agree (sam2-and-prefetch.md §A1); `sam-inference fetch` verifies them.
OFFICIAL_SAM2_CHECKPOINTS = {
    "hiera_t": OfficialCheckpoint(
        _SAM2_1 + "sam2.1_hiera_tiny.pt",
        "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69",
        156_008_466,
    ),
    "hiera_s": OfficialCheckpoint(
        _SAM2_1 + "sam2.1_hiera_small.pt",
        "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38",
        184_416_285,
    ),
    "hiera_b+": OfficialCheckpoint(
        _SAM2_1 + "sam2.1_hiera_base_plus.pt",
        "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5",
        323_606_802,
    ),
    "hiera_l": OfficialCheckpoint(
        _SAM2_1 + "sam2.1_hiera_large.pt",
        "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318",
        898_083_611,
    ),
}


def variant_problem(family: str, variant: str) -> str | None:
    """The CRD's rule on ``spec.model``: the variant belongs to the family."""
    if variant in VARIANTS[family]:
        return None
    return (
        "spec.model.variant must be a variant of spec.model.family: hiera_t, hiera_s, hiera_b+, hiera_l or "
        "hiera_micro for sam2 (the default vit_h is not one); vit_b, vit_l, vit_h or vit_tiny for sam"
    )


def family_problem(
    family: str, variant: str, mode: str, function_name: str | None, engine: str, precision: str
) -> str | None:
    """The CRD's rules on ``spec`` that involve the family, in the CRD's order."""
    if family == "sam2" and mode != "masks" and function_name != SAM2_CVAT_FUNCTION_NAME:
        return (
            "spec.cvat.mode embedding with spec.model.family sam2 needs a SAM 2 decoder in the browser, and stock "
            f"CVAT has none: use spec.cvat.mode masks (decoded on the server), or spec.cvat.functionName "
            f"{SAM2_CVAT_FUNCTION_NAME} with variant hiera_l for CVAT PR #8610's plugin"
        )
    if function_name == SAM2_CVAT_FUNCTION_NAME and (variant != "hiera_l" or mode != "embedding"):
        return (
            f"spec.cvat.functionName {SAM2_CVAT_FUNCTION_NAME} is decoded in the browser by CVAT PR #8610's plugin "
            "with its bundled Hiera-L decoder: it requires spec.model.family sam2, spec.model.variant hiera_l and "
            "spec.cvat.mode embedding"
        )
    if family == "sam2" and (engine in ("fused", "openvino") or precision == "int8"):
        return (
            "spec.runtime.engine fused or openvino and spec.runtime.precision int8 rewrite SAM 1's ViT encoder; with "
            "spec.model.family sam2 use engine auto or torch and precision auto, float32, bfloat16 or float16"
        )
    return None
