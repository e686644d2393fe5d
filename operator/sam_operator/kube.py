"""The only module that talks to the Kubernetes API: read, server-side apply, delete, status patches.

Every write goes through here and is counted in ``sam_operator_writes_total``; the reconciler decides *whether*
to write (see :mod:`sam_operator.drift`), this module only carries it out.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kubernetes import client, config, dynamic
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

from sam_operator import metrics

FIELD_MANAGER = "sam-operator"
#: (connect, read) seconds for every API call without its own timeout. The client's default is none at all: a
#: connection whose far end vanished without a FIN/RST would hang its caller forever, holding that SamModel's
#: reconcile lock (tests/faults: test_connections_that_go_silent_do_not_freeze_the_operator).
REQUEST_TIMEOUT = (5.0, 20.0)
log = logging.getLogger(__name__)


def _bound_requests(api_client: client.ApiClient, timeout: tuple[float, float]) -> None:
    """Give every request of ``api_client`` that sets no ``_request_timeout`` this one (discovery included)."""
    rest = api_client.rest_client
    unbounded = rest.request

    def request(*args: Any, _request_timeout: Any = None, **kwargs: Any) -> Any:
        return unbounded(*args, _request_timeout=_request_timeout or timeout, **kwargs)

    rest.request = request


def load_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """In-cluster credentials when running in a pod, otherwise the kubeconfig (``KUBECONFIG`` or ~/.kube/config)."""
    try:
        config.load_incluster_config()
        return client.ApiClient()
    except config.ConfigException:
        return config.new_client_from_config(config_file=kubeconfig)


class Kube:
    """Thin, typed access to the API server for the reconciler (plain dicts in and out)."""

    def __init__(self, api_client: client.ApiClient) -> None:
        _bound_requests(api_client, REQUEST_TIMEOUT)
        self.api_client = api_client
        self.dynamic = dynamic.DynamicClient(api_client)
        self._discovery_lock = threading.RLock()

    def _resource(self, api_version: str, kind: str) -> Any:
        # The discovery cache is shared by the reconciles' threads, and has_api resets it: a search running
        # while another thread resets it fails with KeyError('resources'/'apis'). Serialise cache access.
        with self._discovery_lock:
            return self.dynamic.resources.get(api_version=api_version, kind=kind)

    def has_api(self, api_version: str, kind: str) -> bool:
        """Whether the cluster serves this kind (e.g. ServiceMonitor only where prometheus-operator is installed)."""
        try:
            with self._discovery_lock:
                self.dynamic.resources.invalidate_cache()
                self._resource(api_version, kind)
            return True
        except ResourceNotFoundError:
            return False

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj = self._resource(api_version, kind).get(name=name, namespace=namespace)
        except NotFoundError:
            return None
        result: dict[str, Any] = obj.to_dict()
        return result

    def list(self, api_version: str, kind: str, namespace: str, label_selector: str = "") -> list[dict[str, Any]]:
        objs = self._resource(api_version, kind).get(namespace=namespace, label_selector=label_selector)
        return [item.to_dict() for item in objs.items]

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply with our field manager; we own the fields we render, so conflicts are forced."""
        meta = body["metadata"]
        resource = self._resource(body["apiVersion"], body["kind"])
        obj = resource.server_side_apply(
            body=body, name=meta["name"], namespace=meta.get("namespace"),
            field_manager=FIELD_MANAGER, force_conflicts=True,
        )
        metrics.WRITES.labels(kind=body["kind"], verb="apply").inc()
        log.info("Applied %s", body["kind"], extra={"object": f"{meta.get('namespace')}/{meta['name']}"})
        result: dict[str, Any] = obj.to_dict()
        return result

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        try:
            self._resource(api_version, kind).delete(name=name, namespace=namespace,
                                                     body={"propagationPolicy": "Background"})
        except NotFoundError:
            return
        metrics.WRITES.labels(kind=kind, verb="delete").inc()
        log.info("Deleted %s", kind, extra={"object": f"{namespace}/{name}"})

    def patch_status(self, group: str, version: str, plural: str, namespace: str, name: str,
                     status: dict[str, Any]) -> None:
        """Replace the custom object's status through the status subresource (JSON merge patch)."""
        api = client.CustomObjectsApi(self.api_client)
        try:
            api.patch_namespaced_custom_object_status(group, version, namespace, plural, name, {"status": status})
        except ApiException as exc:
            if exc.status == 404:  # deleted while we reconciled
                return
            raise
        metrics.WRITES.labels(kind="SamModel", verb="patch-status").inc()
