"""Labels the operator puts on every child and encoder pod, and what the gateway selects them by."""

from __future__ import annotations

__all__ = [
    "COMPONENT_LABEL",
    "ENCODER_COMPONENT",
    "ENCODER_NAME",
    "INSTANCE_LABEL",
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "MANAGED_BY_SELECTOR",
    "NAME_LABEL",
    "PART_OF",
    "PART_OF_LABEL",
]

NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
COMPONENT_LABEL = "app.kubernetes.io/component"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
PART_OF_LABEL = "app.kubernetes.io/part-of"

#: ``app.kubernetes.io/name`` of encoder pods.
ENCODER_NAME = "sam-encoder"
#: ``app.kubernetes.io/component`` of encoder pods.
ENCODER_COMPONENT = "encoder"
#: ``app.kubernetes.io/managed-by`` and ``app.kubernetes.io/part-of`` of everything the operator creates.
MANAGED_BY = "sam-operator"
PART_OF = "sam-operator"
#: Label selector of everything the operator manages (its informers and the gateway's pod watch use it).
MANAGED_BY_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
