"""The ServiceMonitor (monitoring.coreos.com/v1) scraping the encoders' /metrics. Pure.

Rendered only when the caller has seen the ``monitoring.coreos.com`` API (the operator checks discovery).
"""

from __future__ import annotations

from typing import Any

from sam_operator.render.labels import child_metadata, selector_labels
from sam_operator.resources import SamModel
from sam_operator.settings import OperatorSettings

__all__ = ["build_servicemonitor"]


def build_servicemonitor(model: SamModel, settings: OperatorSettings, *, api_available: bool) -> dict[str, Any] | None:
    """The ServiceMonitor when ``spec.monitoring.serviceMonitor`` and the API exists, else None."""
    monitoring = model.spec.monitoring
    if not (api_available and monitoring.service_monitor):
        return None
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": child_metadata(model.name, model.namespace, settings.service_monitor_labels),
        "spec": {
            "selector": {"matchLabels": selector_labels(model.name)},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": monitoring.interval}],
        },
    }
