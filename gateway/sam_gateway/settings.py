"""Gateway settings: every knob of the CVAT-facing gateway, read from ``SAM_GATEWAY_*`` env vars.

Built once in ``__main__`` and passed to :func:`sam_gateway.app.create_app` and the watcher; nothing
reads the environment at import time.
"""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class GatewaySettings(BaseSettings):
    """Configuration of the Nuclio-compatible gateway (env prefix ``SAM_GATEWAY_``)."""

    model_config = SettingsConfigDict(env_prefix="SAM_GATEWAY_", env_nested_delimiter="__", extra="ignore")

    host: str = Field(default="0.0.0.0", description="Address the dashboard API listens on.")
    port: int = Field(default=8070, description="Dashboard API port (CVAT_NUCLIO_PORT, Nuclio's default 8070).")
    direct_enabled: bool = Field(
        default=True, description="Open one listener per function on its status.cvat.httpPort (CVAT direct mode)."
    )
    direct_host: str | None = Field(
        default=None, description="Address the direct-mode ports listen on (default: host)."
    )
    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Namespaces to watch for SamModels and encoder pods; empty = all namespaces.",
    )
    kubeconfig: str | None = Field(
        default=None, description="Kubeconfig file; default: in-cluster config, else $KUBECONFIG / ~/.kube/config."
    )
    pod_address_annotation: str | None = Field(
        default=None,
        description=(
            "Pod annotation holding the replica address (host:port); honoured only when set "
            "(tests use samoperator.io/test-address). Otherwise the gateway dials <podIP>:<encoder_port>."
        ),
    )
    encoder_port: int = Field(default=8080, description="Encoder container port dialled at the pod IP.")
    project_name: str = Field(
        default="cvat", description="Value of the nuclio.io/project-name label; x-nuclio-project-name filters on it."
    )
    strict_namespace: bool = Field(
        default=False,
        description=(
            "When true, x-nuclio-function-namespace must equal the SamModel's namespace. Off by default "
            "because CVAT sends its own configured namespace (often 'nuclio')."
        ),
    )
    token: str | None = Field(
        default=None,
        repr=False,  # a logged or printed settings object must not carry the credential
        description="When set, /api/* requires 'Authorization: Bearer <token>' (health/metrics stay open).",
    )
    upstream_timeout_s: float = Field(
        default=100.0, gt=0, lt=120, description="Deadline for one invocation, retries included (< CVAT's 120 s)."
    )
    wake_timeout_s: float = Field(
        default=90.0,
        gt=0,
        lt=120,
        description=(
            "How long an invocation of a model scaled to zero is held for a replica to become Ready; then 503 with "
            "Retry-After. The forward after the wake gets what is left of 115 s (CVAT gives up at 120 s)."
        ),
    )
    scale_to_zero_interval_s: float = Field(
        default=15.0, gt=0, description="How often idle minReplicas-0 SamModels are checked against their quiet period."
    )
    scale_to_zero_enabled: bool = Field(
        default=True,
        description="Put idle minReplicas-0 SamModels to sleep and wake them (needs sammodels/scale RBAC).",
    )
    connect_timeout_s: float = Field(default=3.0, gt=0, description="TCP connect timeout per replica attempt.")
    relay_min_bytes: int = Field(
        default=0,
        ge=0,
        description=(
            "0: every answer is read whole before it goes to CVAT, so a replica dying mid-answer is retried on the "
            "next. N > 0: answers of N bytes or more (524288: every embedding) are relayed as they arrive, a few ms "
            "faster, and a replica breaking off mid-relay fails that call (CVAT sees a short body)."
        ),
    )
    max_body_bytes: int = Field(default=64 * 1024 * 1024, gt=0, description="Largest accepted invocation body.")
    watch_timeout_s: int = Field(
        default=300, gt=0, description="Server-side timeout of one watch request before it is renewed."
    )
    log_level: str = Field(default="INFO", description="Python logging level.")
    log_json: bool = Field(default=False, description="Emit JSON log lines (in-cluster).")

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: object) -> object:
        # Accept "a,b" as well as a JSON list ('["a","b"]').
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @property
    def direct_listen_host(self) -> str:
        """Address the direct-mode listeners bind to."""
        return self.direct_host or self.host
