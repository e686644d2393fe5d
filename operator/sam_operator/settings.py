"""Operator-wide settings (``OperatorSettings``), read once from ``SAM_OPERATOR_*`` environment variables.

Built in ``__main__`` (kopf startup in ``handlers``) and passed down to ``kube``, ``render`` and ``reconcile``; never
a module-level global, and never read from the environment in pure code (``status`` gets what ``reconcile`` decided).
Nested groups use ``__`` as delimiter (pydantic-settings), e.g. ``SAM_OPERATOR_NAMESPACES='["a","b"]'``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["OperatorSettings"]

PullPolicy = Literal["Always", "IfNotPresent", "Never"]


class OperatorSettings(BaseSettings):
    """Settings of the operator process; every field maps to ``SAM_OPERATOR_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="SAM_OPERATOR_", env_nested_delimiter="__", extra="ignore")

    encoder_image: str = Field(
        default="ghcr.io/sam-operator/sam-inference:0.1.0",
        description="Default encoder image (must provide the sam-inference CLI); spec.image overrides it.",
    )
    image_pull_policy: PullPolicy = Field(
        default="IfNotPresent",
        description="Default pull policy of the encoder image; spec.imagePullPolicy overrides it.",
    )
    image_pull_secrets: list[str] = Field(
        default_factory=list,
        description="Pull secrets added to every encoder pod (besides spec.imagePullSecrets).",
    )
    direct_port_base: int = Field(
        default=32768, ge=1, le=65535, description="First port of the CVAT direct-mode range (status.cvat.httpPort)."
    )
    direct_port_range_size: int = Field(default=1000, ge=1, le=65535, description="How many ports the range holds.")
    resync_interval_seconds: float = Field(
        default=300.0, gt=0, description="Period of the level-based resync of every SamModel (spread over the period)."
    )
    workers: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Reconciles that may run at once (different SamModels; one SamModel never runs twice at once).",
    )
    coalesce_seconds: float = Field(
        default=0.25,
        ge=0,
        le=10,
        description="Events of a SamModel's children and pods within this window become one reconcile.",
    )
    discovery_ttl_seconds: float = Field(
        default=30.0, gt=0, description="How long API discovery is cached (e.g. ServiceMonitor appearing)."
    )
    watch_timeout_seconds: int = Field(
        default=30,
        ge=5,
        le=3600,
        description="Server-side timeout of each watch request; a silent connection is dropped 15 s after it.",
    )
    metrics_port: int = Field(default=9090, ge=1, le=65535, description="Port of the operator's Prometheus metrics.")
    metrics_host: str = Field(default="0.0.0.0", description="Address the metrics server listens on.")
    health_host: str = Field(default="0.0.0.0", description="Address the liveness endpoint listens on.")
    health_port: int = Field(default=8081, ge=1, le=65535, description="Port of the operator's liveness endpoint.")
    namespaces: list[str] = Field(
        default_factory=list, description="Namespaces to watch; empty means the whole cluster."
    )
    field_manager: str = Field(default="sam-operator", description="Server-side apply field manager.")
    startup_timeout_seconds: int = Field(
        default=900,
        ge=30,
        description="How long an encoder may take to load its model before the startup probe gives up.",
    )
    service_monitor_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Extra labels on rendered ServiceMonitors (e.g. release: kube-prometheus-stack).",
    )
    keda_prometheus_address: str = Field(
        default="http://prometheus-operated.monitoring.svc:9090",
        description="Prometheus URL the rendered KEDA ScaledObjects query (provider keda).",
    )
    gateway_pod_labels: dict[str, str] = Field(
        default_factory=lambda: {
            "app.kubernetes.io/part-of": "sam-operator",
            "app.kubernetes.io/component": "gateway",
        },
        description="Labels of the gateway pods, admitted by the encoder NetworkPolicy (any namespace).",
    )
    gateway_namespace: str | None = Field(
        default=None,
        description="Namespace the gateway runs in; pins the encoder NetworkPolicy's gateway peer to it "
        "(unset: gateway-labelled pods in any namespace).",
    )
    log_format: Literal["plain", "json"] = Field(default="plain", description="Log line format.")
    log_level: str = Field(default="INFO", description="Root log level.")
