"""The only module that talks to the Kubernetes API: read, server-side apply, delete, status patches.

Every write goes through here and is counted in ``sam_operator_writes_total``; the reconciler decides *whether*
to write (see :mod:`sam_operator.drift`), this module only carries it out.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from kubernetes import client, config, dynamic
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError
from kubernetes.watch.watch import iter_resp_lines

from sam_operator import metrics

__all__ = ["REQUEST_TIMEOUT", "ApiError", "Kube", "load_api_client"]

#: What a failed API call raises (the client's exception, so that no module but this one imports the client).
ApiError = ApiException
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


def load_api_client(kubeconfig: str | None = None, pool_size: int = 32) -> client.ApiClient:
    """In-cluster credentials when running in a pod, otherwise the kubeconfig (``KUBECONFIG`` or ~/.kube/config).

    ``pool_size`` connections are kept: one per watch plus one per worker, so none is opened per request."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


class Kube:
    """Thin, typed access to the API server for the reconciler and the informers (plain dicts in and out).

    Discovery is cached: ``has_api`` refreshes the discovery cache at most once per ``discovery_ttl`` seconds
    (an API that appears, such as ServiceMonitor once prometheus-operator is installed, is noticed that late).
    """

    def __init__(
        self, api_client: client.ApiClient, discovery_ttl: float = 30.0, field_manager: str = "sam-operator"
    ) -> None:
        _bound_requests(api_client, REQUEST_TIMEOUT)
        self.api_client = api_client
        self.field_manager = field_manager  # settings.field_manager: who owns the fields we apply
        self.dynamic = dynamic.DynamicClient(api_client)
        self._discovery_lock = threading.RLock()
        self._discovery_ttl = discovery_ttl
        self._served: dict[tuple[str, str], tuple[bool, float]] = {}  # has_api's answers and when they were found

    def _resource(self, api_version: str, kind: str) -> Any:
        # The discovery cache is shared by the reconciles' threads, and has_api resets it: a search running
        # while another thread resets it fails with KeyError('resources'/'apis'). Serialise cache access.
        with self._discovery_lock:
            return self.dynamic.resources.get(api_version=api_version, kind=kind)

    def has_api(self, api_version: str, kind: str) -> bool:
        """Whether the cluster serves this kind (e.g. ServiceMonitor only where prometheus-operator is installed)."""
        with self._discovery_lock:
            known = self._served.get((api_version, kind))
            if known is not None and time.monotonic() - known[1] < self._discovery_ttl:
                return known[0]
            # Refresh: the client's discovery re-fetches everything on a miss, so ask at most once per TTL.
            self.dynamic.resources.invalidate_cache()
            try:
                self._resource(api_version, kind)
                served = True
            except ResourceNotFoundError:
                served = False
            self._served[(api_version, kind)] = (served, time.monotonic())
            return served

    def may_watch(self, api_version: str, kind: str, namespace: str = "") -> bool:
        """Whether RBAC lets us list and watch ``kind`` (in ``namespace``, or cluster-wide), asked of the API server
        (SelfSubjectAccessReview, which every authenticated user may create). Unknown: True (the list decides)."""
        resource = self._resource(api_version, kind)
        api = client.AuthorizationV1Api(self.api_client)
        try:
            for verb in ("list", "watch"):
                review = api.create_self_subject_access_review(
                    client.V1SelfSubjectAccessReview(
                        spec=client.V1SelfSubjectAccessReviewSpec(
                            resource_attributes=client.V1ResourceAttributes(
                                group=resource.group or "",
                                resource=resource.name,
                                verb=verb,
                                namespace=namespace or None,
                            )
                        )
                    )
                )
                if not review.status.allowed:
                    return False
        except ApiException:
            return True
        return True

    def list_raw(
        self, api_version: str, kind: str, namespace: str = "", label_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """Every object of ``kind`` (in ``namespace``, or the whole cluster) and the list's resourceVersion."""
        resp = self._resource(api_version, kind).get(
            namespace=namespace or None, label_selector=label_selector, serialize=False, _request_timeout=(5.0, 60.0)
        )
        try:
            data = json.loads(resp.data)
        finally:
            resp.release_conn()
        return list(data.get("items") or []), str((data.get("metadata") or {}).get("resourceVersion") or "")

    def watch_raw(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        label_selector: str | None,
        resource_version: str,
        timeout_s: int,
    ) -> Iterator[dict[str, Any]]:
        """Watch events (``{"type", "object"}`` dicts, BOOKMARKs included) from ``resource_version`` on.

        The server ends the stream after ``timeout_s``; the client gives up ``15`` s later, so that a connection
        that went silent is dropped and dialled again by the caller."""
        resp = self._resource(api_version, kind).get(
            namespace=namespace or None,
            label_selector=label_selector,
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout_s,
            serialize=False,
            _request_timeout=(5.0, timeout_s + 15.0),
        )
        try:
            for line in iter_resp_lines(resp):
                if line:
                    yield json.loads(line)
        finally:
            resp.close()
            resp.release_conn()

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
        resp = resource.server_side_apply(  # raw JSON: the client's ResourceInstance wrapping costs more CPU
            body=body,
            name=meta["name"],
            namespace=meta.get("namespace"),
            field_manager=self.field_manager,
            force_conflicts=True,
            serialize=False,
            _request_timeout=REQUEST_TIMEOUT,
        )
        try:
            result: dict[str, Any] = json.loads(resp.data)
        finally:
            resp.release_conn()
        metrics.WRITES.labels(kind=body["kind"], verb="apply").inc()
        log.info("Applied %s", body["kind"], extra={"object": f"{meta.get('namespace')}/{meta['name']}"})
        return result

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        try:
            self._resource(api_version, kind).delete(
                name=name, namespace=namespace, body={"propagationPolicy": "Background"}
            )
        except NotFoundError:
            return
        metrics.WRITES.labels(kind=kind, verb="delete").inc()
        log.info("Deleted %s", kind, extra={"object": f"{namespace}/{name}"})

    def patch_status(
        self, group: str, version: str, plural: str, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Patch the custom object's status through the status subresource (JSON merge patch); return the
        object as the API server stored it (None: it is gone)."""
        api = client.CustomObjectsApi(self.api_client)
        try:
            obj: dict[str, Any] = api.patch_namespaced_custom_object_status(
                group, version, namespace, plural, name, {"status": status}
            )
        except ApiException as exc:
            if exc.status == 404:  # deleted while we reconciled
                return None
            raise
        metrics.WRITES.labels(kind="SamModel", verb="patch-status").inc()
        return obj
