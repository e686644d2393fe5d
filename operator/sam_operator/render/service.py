"""The encoder Service (port 8080 ``http``). Pure; called by ``render.build_children``."""

from __future__ import annotations

from typing import Any

from sam_operator.naming import child_name
from sam_operator.render.deployment import HTTP_PORT
from sam_operator.render.labels import child_metadata, selector_labels
from sam_operator.resources import SamModel

__all__ = ["build_service", "service_endpoint"]


def build_service(model: SamModel) -> dict[str, Any]:
    """ClusterIP Service in front of the encoder pods."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(model.name, model.namespace),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(model.name),
            "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def service_endpoint(cr_name: str, namespace: str) -> str:
    """In-cluster URL of the Service (``status.endpoint``)."""
    return f"http://{child_name(cr_name)}.{namespace}.svc:{HTTP_PORT}"
