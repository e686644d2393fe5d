"""The NetworkPolicy admitting only the gateway (and listed peers) to the encoders. Pure."""

from __future__ import annotations

from typing import Any

from sam_operator.render.deployment import HTTP_PORT, _deep_copy
from sam_operator.render.labels import child_metadata, selector_labels
from sam_operator.resources import SamModel
from sam_operator.settings import OperatorSettings

__all__ = ["build_networkpolicy"]


def build_networkpolicy(model: SamModel, settings: OperatorSettings) -> dict[str, Any] | None:
    """Ingress to port 8080 from the gateway's pods plus ``spec.networkPolicy.additionalFrom``.

    With ``settings.gateway_namespace`` the gateway peer is pinned to that namespace, so a pod elsewhere that
    copies the gateway's labels is not admitted; without it, gateway-labelled pods of any namespace are.
    """
    policy = model.spec.network_policy
    if not policy.enabled:
        return None
    namespaces: dict[str, Any] = (
        {"matchLabels": {"kubernetes.io/metadata.name": settings.gateway_namespace}}
        if settings.gateway_namespace
        else {}
    )
    peers: list[dict[str, Any]] = [
        {"namespaceSelector": namespaces, "podSelector": {"matchLabels": dict(settings.gateway_pod_labels)}}
    ]
    peers += [_deep_copy(peer) for peer in policy.additional_from]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": child_metadata(model.name, model.namespace),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(model.name)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"port": HTTP_PORT, "protocol": "TCP"}]}],
        },
    }
