"""The SamModel API in Python: group/version/kind constants and a typed model of the custom resource.

``crds/sammodels.yaml`` is the source of truth; the pydantic models here mirror its defaults and repeat its
cross-field (CEL) rules, so that an object the API server let through on a cluster with an older CRD still becomes
a clear ``InvalidSpec`` condition instead of an exception. ``parse_sammodel`` never raises.
Called by ``render``, ``status``, ``cvat`` and ``reconcile``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel
from sam_contract.api import API_VERSION, GROUP, KIND, PLURAL, SHORT_NAME, VERSION

from sam_operator.families import Family, Variant, family_problem, variant_problem

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "OFFICIAL_VIT_H_SHA256",
    "PLURAL",
    "SHORT_NAME",
    "STOCK_CVAT_FUNCTION_NAME",
    "VERSION",
    "InvalidSpec",
    "InvalidSpecError",
    "SamModel",
    "SamModelSpec",
    "parse_quantity",
    "parse_sammodel",
]


#: sha256 of https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth, the weights CVAT's stock
#: SAM function and the decoder bundled in its browser plugin were built from.
OFFICIAL_VIT_H_SHA256 = "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"
#: The only function id CVAT's stock SAM browser plugin decodes (``cvat-protocol.md`` §6.1).
STOCK_CVAT_FUNCTION_NAME = "pth-facebookresearch-sam-vit-h"

#: Reason carried by every parsing failure (equal to ``conditions.REASON_INVALID_SPEC``).
_REASON_INVALID_SPEC = "InvalidSpec"

_QUANTITY_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?$")
_SUFFIX_FACTORS: dict[str, Decimal] = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}


def parse_quantity(value: int | str) -> Decimal:
    """Value of a Kubernetes quantity in the subset the CRD accepts (``1Gi``, ``500m``, ``2``, ``1.5G``).

    Raises ``ValueError`` for anything else (callers inside this module turn it into ``InvalidSpec``).
    """
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, int):
        return Decimal(value)
    match = _QUANTITY_RE.match(value.strip())
    if not match:
        raise ValueError(f"not a quantity: {value!r}")
    return Decimal(match.group(1)) * _SUFFIX_FACTORS[match.group(2) or ""]


class _Model(BaseModel):
    """CamelCase aliases like the CRD; unknown fields ignored (the API server prunes them anyway)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class PvcSource(_Model):
    """``spec.model.checkpoint.pvc``."""

    claim_name: str = Field(min_length=1, max_length=253)
    path: str = Field(min_length=1, max_length=1024)

    @model_validator(mode="after")
    def _relative_path(self) -> PvcSource:
        if self.path.startswith("/") or ".." in self.path.split("/"):
            raise ValueError("spec.model.checkpoint.pvc.path must be relative and must not contain '..'")
        return self


class Checkpoint(_Model):
    """``spec.model.checkpoint``: exactly one of url or pvc, and the sha256 the fetch step verifies."""

    url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$", max_length=2048)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    pvc: PvcSource | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Checkpoint:
        if (self.url is None) == (self.pvc is None):
            raise ValueError("spec.model.checkpoint must set exactly one of url or pvc")
        if self.sha256 is None:
            raise ValueError("spec.model.checkpoint.sha256 is required (the fetch step verifies every source)")
        return self


class ModelSpec(_Model):
    """``spec.model``."""

    family: Family = "sam"
    variant: Variant = "vit_h"
    checkpoint: Checkpoint

    @model_validator(mode="after")
    def _variant_of_family(self) -> ModelSpec:
        if problem := variant_problem(self.family, self.variant):
            raise ValueError(problem)
        return self


class RuntimeSpec(_Model):
    """``spec.runtime``."""

    device: Literal["cuda", "cpu"] = "cuda"
    engine: Literal["auto", "torch", "fused", "openvino"] = "auto"
    precision: Literal["auto", "float32", "bfloat16", "float16", "int8"] = "auto"
    max_batch_size: int = Field(default=4, ge=1, le=64)
    batch_wait_milliseconds: int = Field(default=5, ge=0, le=1000)
    max_queue: int = Field(default=32, ge=1, le=100000)
    max_concurrency: int | None = Field(default=None, ge=1, le=10000)
    max_body_bytes: int = Field(default=64 * 2**20, ge=2**20, le=2**30)
    max_pixels: int = Field(default=50_000_000, ge=1, le=1_000_000_000)
    request_timeout_seconds: int = Field(default=60, ge=1, le=3600)


class SharedVolumeSpec(_Model):
    """``spec.cache.sharedVolume``."""

    enabled: bool = False
    storage_class_name: str | None = None
    size: str = "20Gi"
    access_mode: Literal["ReadWriteMany", "ReadWriteOnce"] = "ReadWriteMany"


class CacheSpec(_Model):
    """``spec.cache``."""

    max_bytes: int | str = "1Gi"
    max_entries: int = Field(default=0, ge=0, le=1_000_000)
    shared_volume: SharedVolumeSpec = Field(default_factory=SharedVolumeSpec)

    @property
    def max_bytes_value(self) -> int:
        """``maxBytes`` as a byte count."""
        return int(parse_quantity(self.max_bytes))

    @model_validator(mode="after")
    def _quantities(self) -> CacheSpec:
        try:
            if parse_quantity(self.max_bytes) < 0 or (isinstance(self.max_bytes, str) and "m" in self.max_bytes):
                raise ValueError
        except ValueError:
            raise ValueError(
                "spec.cache.maxBytes must be a non-negative byte count or a quantity such as 2Gi"
            ) from None
        try:
            parse_quantity(self.shared_volume.size)
        except ValueError:
            raise ValueError("spec.cache.sharedVolume.size must be a quantity such as 20Gi") from None
        return self


class AutoscalingSpec(_Model):
    """``spec.autoscaling``."""

    enabled: bool = False
    provider: Literal["hpa", "keda"] = "hpa"
    #: 0: the gateway puts an idle model to sleep after ``quiet_period_seconds`` and wakes it on an invocation.
    min_replicas: int = Field(default=1, ge=0, le=1000)
    max_replicas: int = Field(default=2, ge=1, le=1000)
    quiet_period_seconds: int = Field(default=900, ge=10, le=604800)
    scale_down_stabilization_seconds: int = Field(default=300, ge=0, le=3600)
    target_queue_depth: int | None = Field(default=None, ge=1, le=100000)
    target_latency_milliseconds: int | None = Field(default=None, ge=1, le=600000)

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError("spec.autoscaling.minReplicas must be less than or equal to spec.autoscaling.maxReplicas")
        if self.enabled and self.target_queue_depth is None and self.target_latency_milliseconds is None:
            raise ValueError(
                "spec.autoscaling.enabled needs spec.autoscaling.targetQueueDepth or "
                "spec.autoscaling.targetLatencyMilliseconds"
            )
        return self


class ComputeResources(_Model):
    """``spec.resources.requests`` / ``limits``: cpu and memory quantities."""

    cpu: int | str | None = None
    memory: int | str | None = None


class ResourcesSpec(_Model):
    """``spec.resources``."""

    gpus: int = Field(default=1, ge=0, le=16)
    gpu_resource_name: str = "nvidia.com/gpu"
    requests: ComputeResources = Field(default_factory=ComputeResources)
    limits: ComputeResources = Field(default_factory=ComputeResources)

    @model_validator(mode="after")
    def _limits_cover_requests(self) -> ResourcesSpec:
        for key in ("cpu", "memory"):
            request, limit = getattr(self.requests, key), getattr(self.limits, key)
            for where, value in (("requests", request), ("limits", limit)):
                if value is not None:
                    try:
                        parse_quantity(value)
                    except ValueError:
                        raise ValueError(f"spec.resources.{where}.{key} must be a quantity") from None
            if request is not None and limit is not None and parse_quantity(limit) < parse_quantity(request):
                raise ValueError(
                    f"spec.resources.limits.{key} must be greater than or equal to spec.resources.requests.{key}"
                )
        return self


class LocalObjectReference(_Model):
    """``spec.imagePullSecrets[]``."""

    name: str = Field(min_length=1)


class CvatSpec(_Model):
    """``spec.cvat``."""

    enabled: bool = True
    function_name: str | None = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    display_name: str | None = Field(default=None, min_length=1, max_length=128)
    mode: Literal["embedding", "masks"] = "embedding"


class MonitoringSpec(_Model):
    """``spec.monitoring``."""

    service_monitor: bool = True
    interval: str = Field(default="30s", pattern=r"^[0-9]+(ms|s|m|h)$")


class NetworkPolicySpec(_Model):
    """``spec.networkPolicy``."""

    enabled: bool = False
    additional_from: list[dict[str, Any]] = Field(default_factory=list)


class SamModelSpec(_Model):
    """``spec`` of a SamModel, with the CRD's defaults."""

    model: ModelSpec
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    cache: CacheSpec = Field(default_factory=CacheSpec)
    replicas: int = Field(default=1, ge=0, le=1000)
    autoscaling: AutoscalingSpec = Field(default_factory=AutoscalingSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    affinity: dict[str, Any] | None = None
    priority_class_name: str | None = None
    image: str | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    image_pull_secrets: list[LocalObjectReference] = Field(default_factory=list)
    cvat: CvatSpec = Field(default_factory=CvatSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    network_policy: NetworkPolicySpec = Field(default_factory=NetworkPolicySpec)

    @model_validator(mode="after")
    def _cross_field(self) -> SamModelSpec:
        # The same rules as the CRD's x-kubernetes-validations, with the same messages.
        if self.resources.gpus == 0 and self.runtime.device != "cpu":
            raise ValueError("spec.runtime.device must be cpu when spec.resources.gpus is 0")
        if self.runtime.device == "cpu" and self.resources.gpus != 0:
            raise ValueError("spec.resources.gpus must be 0 when spec.runtime.device is cpu")
        if self.runtime.precision == "float16" and self.runtime.device != "cuda":
            raise ValueError(
                "spec.runtime.precision float16 needs spec.runtime.device cuda (use bfloat16 or float32 on cpu)"
            )
        if self.runtime.precision == "int8" and self.runtime.device != "cpu":
            raise ValueError(
                "spec.runtime.precision int8 needs spec.runtime.device cpu (use auto, bfloat16 or float16 on cuda)"
            )
        if self.runtime.engine == "openvino" and (
            self.runtime.device != "cpu" or self.runtime.precision not in ("auto", "float32", "bfloat16", "int8")
        ):
            raise ValueError(
                "spec.runtime.engine openvino runs on spec.runtime.device cpu in precision auto, float32, bfloat16 or "
                "int8 (use engine auto, torch or fused on cuda)"
            )
        if self.autoscaling.enabled and self.replicas == 0 and self.autoscaling.min_replicas != 0:
            raise ValueError(
                "spec.replicas 0 would pause the HorizontalPodAutoscaler; set spec.autoscaling.minReplicas 0 "
                "(the gateway wakes the model) or spec.autoscaling.enabled false to scale to zero"
            )
        if self.cvat.function_name == STOCK_CVAT_FUNCTION_NAME and (
            self.model.variant != "vit_h" or self.cvat.mode != "embedding"
        ):
            raise ValueError(
                f"spec.cvat.functionName {STOCK_CVAT_FUNCTION_NAME} is decoded in the browser by CVAT's stock SAM "
                "plugin with its bundled ViT-H decoder: it requires spec.model.variant vit_h and "
                "spec.cvat.mode embedding"
            )
        model, cvat, runtime = self.model, self.cvat, self.runtime
        if problem := family_problem(
            model.family, model.variant, cvat.mode, cvat.function_name, runtime.engine, runtime.precision
        ):
            raise ValueError(problem)
        return self

    @property
    def scales_to_zero(self) -> bool:
        """Whether the gateway may put this model to sleep at 0 replicas (and must wake it)."""
        return self.autoscaling.enabled and self.autoscaling.min_replicas == 0

    @property
    def effective_replicas(self) -> int:
        """Replicas the Deployment gets: spec.replicas, clamped to the autoscaler's bounds when it is enabled."""
        if self.autoscaling.enabled:
            return min(max(self.replicas, self.autoscaling.min_replicas), self.autoscaling.max_replicas)
        return self.replicas


@dataclass(frozen=True)
class SamModel:
    """A parsed SamModel: identity from ``metadata`` plus the typed spec."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: SamModelSpec


@dataclass(frozen=True)
class InvalidSpec:
    """Why a SamModel could not be parsed; becomes a condition (``reason`` is a condition reason)."""

    message: str
    reason: str = _REASON_INVALID_SPEC


class InvalidSpecError(ValueError):
    """Raised by the builders that are handed an unparseable body; carries the ``InvalidSpec``."""

    def __init__(self, invalid: InvalidSpec) -> None:
        super().__init__(invalid.message)
        self.invalid = invalid


def _format_validation_error(error: ValidationError) -> str:
    parts: list[str] = []
    for item in error.errors(include_url=False):
        loc = ".".join(str(p) for p in item.get("loc", ()) if p != "__root__")
        msg = str(item.get("msg", "invalid"))
        msg = msg.removeprefix("Value error, ")
        if msg.startswith("spec."):
            parts.append(msg)
        else:
            parts.append(f"spec.{loc}: {msg}" if loc else f"spec: {msg}")
    return "; ".join(parts)


def parse_sammodel(body: Mapping[str, Any]) -> SamModel | InvalidSpec:
    """Parse a SamModel body (as the API returns it) into a ``SamModel``, or say why it is invalid. Never raises."""
    try:
        metadata = body.get("metadata") or {}
        spec_body = body.get("spec")
        if not isinstance(spec_body, Mapping):
            return InvalidSpec("spec: required object is missing")
        spec = SamModelSpec.model_validate(dict(spec_body))
        return SamModel(
            name=str(metadata.get("name", "")),
            namespace=str(metadata.get("namespace", "") or "default"),
            uid=str(metadata.get("uid", "")),
            generation=int(metadata.get("generation", 0) or 0),
            spec=spec,
        )
    except ValidationError as error:
        return InvalidSpec(_format_validation_error(error))
    except (TypeError, ValueError, AttributeError, OverflowError) as error:  # malformed metadata and the like
        return InvalidSpec(f"spec: {error}")
