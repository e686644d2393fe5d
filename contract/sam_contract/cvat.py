"""``status.cvat``: what the operator publishes about a SamModel for CVAT, and what the gateway lists from it.

One type for both sides: the operator's status writer builds a :class:`CvatStatus` and writes
:meth:`CvatStatus.to_status`; the gateway's catalog reads it back with :meth:`CvatStatus.from_status`. The CRD's
status schema (``crds/sammodels.yaml``) declares the same fields; ``docs/architecture.md`` shows an example.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

__all__ = ["DEFAULT_MODE", "CvatStatus"]

log = logging.getLogger(__name__)

#: ``mode`` when a status carries none: the CVAT SAM plugin's embedding blob.
DEFAULT_MODE = "embedding"


class CvatStatus(BaseModel):
    """``status.cvat`` of a SamModel (camelCase in the API, snake_case here)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)

    enabled: bool = False
    function_name: str = ""
    display_name: str = ""
    mode: str = DEFAULT_MODE
    description: str = ""
    #: CVAT's direct-mode port; None when none is allocated (disabled, or the range is full).
    http_port: int | None = None
    #: Exactly the Nuclio ``metadata.annotations`` CVAT reads: all values strings, no ``"false"``.
    annotations: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)

    def to_status(self) -> dict[str, Any]:
        """The ``status.cvat`` object to write: no ``httpPort`` when there is none, no empty ``warnings``."""
        out = self.model_dump(by_alias=True, exclude_none=True)
        if not self.warnings:
            del out["warnings"]
        return out

    @classmethod
    def from_status(cls, value: object) -> CvatStatus | None:
        """Read ``status.cvat`` back; None when it is absent or not of this shape (logged)."""
        if not isinstance(value, Mapping):
            return None
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            log.warning("Ignored a malformed status.cvat", extra={"error": str(exc)})
            return None
