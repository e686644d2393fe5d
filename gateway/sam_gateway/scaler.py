"""The gateway's writes for scale to zero: ``sammodels/scale`` and Events on the SamModel, over the API.

The only writes the gateway makes; its RBAC (charts/sam-operator/templates/rbac.yaml) grants exactly
``patch`` on ``sammodels/scale`` and ``create`` on ``events``. The ``kubernetes`` sync client runs in a thread so
that the event loop never blocks on the API server.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime
from typing import Any

from sam_contract.api import API_VERSION, GROUP, KIND, PLURAL, VERSION

from sam_gateway.catalog import Function

log = logging.getLogger(__name__)


class KubeScaler:
    """:class:`sam_gateway.activator.Scaler` over a kubernetes ``ApiClient``."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)
        self._instance = os.environ.get("HOSTNAME", "sam-gateway")

    async def set_replicas(self, namespace: str, name: str, replicas: int) -> None:
        await asyncio.to_thread(
            self._custom.patch_namespaced_custom_object_scale,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"spec": {"replicas": replicas}},
            _request_timeout=30,
        )

    async def record_event(self, function: Function, reason: str, message: str) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "metadata": {"generateName": f"{function.model_name}.", "namespace": function.namespace},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": function.model_name,
                "namespace": function.namespace,
                "uid": function.uid,
            },
            "reason": reason,
            "message": message,
            "type": "Normal",
            "source": {"component": "sam-gateway"},
            "reportingComponent": "sam-gateway",
            "reportingInstance": self._instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await asyncio.to_thread(self._core.create_namespaced_event, function.namespace, event, _request_timeout=30)
        except Exception as exc:  # an Event is a record, not a step: the wake or sleep already happened
            log.warning("Failed to record event", extra={"reason": reason, "error": repr(exc)})
