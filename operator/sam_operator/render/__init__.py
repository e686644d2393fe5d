"""Pure rendering of a SamModel's children: ``build_children(body, settings) -> list[manifest]``.

Builders never mutate their input and never talk to the API; ``reconcile`` applies what they return (adding
owner references with ``owner_reference``). Order: PVC, Deployment, Service, PDB, HPA or ScaledObject, ServiceMonitor,
NetworkPolicy. Golden-tested in ``tests/unit/operator/test_operator_render.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sam_operator.render.autoscaling import build_hpa, build_scaledobject
from sam_operator.render.deployment import build_deployment
from sam_operator.render.disruption import build_pdb
from sam_operator.render.labels import labels, selector_labels, selector_string
from sam_operator.render.monitoring import build_servicemonitor
from sam_operator.render.network import build_networkpolicy
from sam_operator.render.service import build_service, service_endpoint
from sam_operator.render.storage import build_pvc
from sam_operator.resources import API_VERSION, KIND, InvalidSpec, InvalidSpecError, SamModel, parse_sammodel
from sam_operator.settings import OperatorSettings

__all__ = [
    "build_children",
    "build_deployment",
    "build_hpa",
    "build_networkpolicy",
    "build_pdb",
    "build_pvc",
    "build_scaledobject",
    "build_service",
    "build_servicemonitor",
    "labels",
    "owner_reference",
    "selector_labels",
    "selector_string",
    "service_endpoint",
]


def owner_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    """The controller owner reference pointing at SamModel ``body`` (children are garbage-collected with it)."""
    metadata = body.get("metadata") or {}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": str(metadata.get("name", "")),
        "uid": str(metadata.get("uid", "")),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def build_children(
    sammodel: Mapping[str, Any] | SamModel,
    settings: OperatorSettings,
    *,
    service_monitor_api: bool = False,
    keda_api: bool = False,
) -> list[dict[str, Any]]:
    """Every child object SamModel ``sammodel`` should have, without owner references.

    ``sammodel`` is the CR body or an already parsed ``SamModel``. An unparseable body raises
    ``InvalidSpecError`` (carrying the ``InvalidSpec`` condition reason and message); call
    ``resources.parse_sammodel`` first to handle that case without exceptions. Children not listed (no PVC,
    no PDB, ...) should be deleted if they exist.
    """
    model = parse_sammodel(sammodel) if isinstance(sammodel, Mapping) else sammodel
    if isinstance(model, InvalidSpec):
        raise InvalidSpecError(model)
    candidates = [
        build_pvc(model),
        build_deployment(model, settings),
        build_service(model),
        build_pdb(model),
        build_hpa(model),
        build_scaledobject(model, settings.keda_prometheus_address, api_available=keda_api),
        build_servicemonitor(model, settings, api_available=service_monitor_api),
        build_networkpolicy(model, settings),
    ]
    return [child for child in candidates if child is not None]
