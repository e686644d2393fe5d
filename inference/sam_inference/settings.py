"""Encoder settings: every knob of `sam-inference serve`, read from `SAM_INFERENCE_*` env vars.

Owned by the encoder; the operator renders these env vars into the pod spec (docs/architecture.md,
"Encoder settings"). Built once in `__main__` and passed to `create_app()`; never a module global.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sam_contract.models import VARIANTS

ModelFamily = Literal["sam", "sam2"]
ModelVariant = Literal[
    "vit_b", "vit_l", "vit_h", "vit_tiny", "hiera_t", "hiera_s", "hiera_b+", "hiera_l", "hiera_micro"
]
ServiceMode = Literal["embedding", "masks"]
MaskDecoderChoice = Literal["auto", "torch", "onnxruntime", "openvino"]
Device = Literal["cuda", "cpu"]
Precision = Literal["auto", "float32", "bfloat16", "float16", "int8"]
Engine = Literal["auto", "torch", "fused", "openvino"]

MIB = 1024 * 1024
GIB = 1024 * MIB


class InferenceSettings(BaseSettings):
    """Configuration of one encoder process (env prefix `SAM_INFERENCE_`)."""

    model_config = SettingsConfigDict(
        env_prefix="SAM_INFERENCE_", env_nested_delimiter="__", extra="ignore", protected_namespaces=()
    )

    host: str = Field("0.0.0.0", description="Listen address.")
    port: int = Field(8080, ge=0, le=65535, description="Listen port.")
    model_family: ModelFamily = Field("sam", description="sam (Segment Anything) or sam2 (SAM 2.1).")
    model_variant: ModelVariant = Field(
        "vit_h", description="Backbone of the family (VARIANTS); vit_tiny and hiera_micro are the test/demo models."
    )
    checkpoint_path: Path = Field(description="Checkpoint file (a state dict).")
    decoder_path: Path | None = Field(None, description="CVAT-format decoder ONNX served at /v1/decoder.onnx.")
    mode: ServiceMode = Field("embedding", description="What POST / returns: CVAT blob or CVAT mask shapes.")
    device: Device = Field("cuda", description="Torch device; cuda falls back to an error, never silently.")
    engine: Engine = Field(
        "auto",
        description="Encoder engine: torch (upstream modules), fused (SDPA, blockwise rel-pos) or openvino (cpu: the "
        "encoder converted to OpenVINO, int8 by NNCF post-training quantization; kept beside the checkpoint); "
        "auto = fused.",
    )
    precision: Precision = Field(
        "auto",
        description="Encoder compute precision (output is float32); auto: the fastest that holds fidelity here "
        "(cuda: bfloat16, else float16; cpu: int8 Linear layers with VNNI, bfloat16 with native bf16, else float32).",
    )
    mask_decoder: MaskDecoderChoice = Field(
        "auto",
        description="SAM's prompt encoder + mask decoder (masks mode): torch (upstream modules), onnxruntime (float32) "
        "or openvino (its products over the image tokens in bfloat16 where the CPU has it); auto: openvino on a CPU "
        "with AMX, else onnxruntime on the CPU, torch on cuda (embedding mode: torch).",
    )
    max_batch_size: int = Field(4, ge=1, description="Most images encoded in one forward pass.")
    batch_wait_ms: float = Field(5.0, ge=0, description="How long a batch waits for more images.")
    max_queue: int = Field(32, ge=1, description="Images waiting for the encoder before 429.")
    max_concurrency: int | None = Field(
        None, ge=1, description="Requests handled at once (decode, queue, encode) before 429; unset: no cap."
    )
    max_body_bytes: int = Field(64 * MIB, ge=1024, description="Largest accepted request body.")
    max_pixels: int = Field(50_000_000, ge=1, description="Largest accepted image (width x height).")
    request_timeout_s: float = Field(60.0, gt=0, description="Per-request deadline.")
    cache_max_bytes: int = Field(1 * GIB, ge=0, description="Embedding LRU budget in bytes (0 disables).")
    cache_max_entries: int = Field(0, ge=0, description="Embedding LRU entry cap (0 = bytes only).")
    model_id: str | None = Field(None, description="Cache-key identity; defaults to the checkpoint sha256.")
    refine_ttl_s: float = Field(
        300.0, ge=0, description="How long a mask's low-res logits wait for the next click (0 disables refinement)."
    )
    refine_max_entries: int = Field(256, ge=0, description="Low-res masks kept for refinement (256 KiB each).")
    log_level: str = Field("INFO", description="Python log level.")

    @model_validator(mode="after")
    def _variant_of_family(self) -> InferenceSettings:
        if self.model_variant not in VARIANTS[self.model_family]:
            raise ValueError(
                f"model_variant {self.model_variant!r} is not a {self.model_family} variant; "
                f"expected one of {', '.join(VARIANTS[self.model_family])}"
            )
        return self
