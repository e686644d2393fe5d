"""Reading SamModels and their conditions in tests."""

from __future__ import annotations

from typing import Any

from harness.cluster import Cluster, wait_for


def get_sam(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = cluster.custom().get_namespaced_custom_object(
        "samoperator.io", "v1alpha1", namespace, "sammodels", name
    )
    body.setdefault("status", {})
    return body


def condition(sam: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in sam.get("status", {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return {}


def wait_condition(
    cluster: Cluster, namespace: str, name: str, type_: str, status: str, reason: str | None = None, timeout: float = 60
) -> dict[str, Any]:
    """Wait until the SamModel's condition has this status (and reason); return the SamModel."""

    def check() -> dict[str, Any] | None:
        sam = get_sam(cluster, namespace, name)
        cond = condition(sam, type_)
        if cond.get("status") == status and (reason is None or cond.get("reason") == reason):
            return sam
        return None

    try:
        result: dict[str, Any] = wait_for(check, timeout, interval=0.5)
    except AssertionError:
        sam = get_sam(cluster, namespace, name)
        raise AssertionError(f"{type_}={status} ({reason}) not reached; status now: {sam.get('status')}") from None
    return result
