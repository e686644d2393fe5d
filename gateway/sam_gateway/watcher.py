"""Keep the catalog in step with the Kubernetes API: list-then-watch SamModels and encoder pods.

One daemon thread per (resource, namespace scope) runs the ``kubernetes`` sync client:

1. list → replace that scope's objects in the catalog, remember the list's ``resourceVersion``;
2. watch from that ``resourceVersion`` (with bookmarks) and apply each event; when the server ends the watch
   (``timeout_seconds``), watch again from the last version seen;
3. ``410 Gone`` (version too old) → list again; any other failure → retry with capped exponential backoff,
   resuming the watch when the version is still valid.

Threads never touch the catalog: they hand messages to the event loop with ``call_soon_threadsafe``, and
:meth:`ClusterWatcher.apply` mutates the catalog there. The catalog reports ``synced`` (→ ``/readyz``) only after
every scope's first list. Configuration: ``SAM_GATEWAY_KUBECONFIG``, else ``$KUBECONFIG``, else in-cluster, else
``~/.kube/config``; so the watcher can be pointed at any cluster.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sam_contract.api import GROUP, PLURAL, VERSION
from sam_contract.labels import MANAGED_BY_SELECTOR

from sam_gateway.catalog import Catalog
from sam_gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

SAMMODELS = PLURAL
PODS = "pods"

Object = dict[str, Any]
# list_fn() -> (items, resourceVersion); watch_fn(resourceVersion, timeout_s) -> iterator of raw watch events.
ListFn = Callable[[], tuple[list[Object], str]]
WatchFn = Callable[[str, int], Iterator[Object]]


@dataclass(frozen=True)
class Relisted:
    """A scope's fresh list result (replaces what the catalog held for it)."""

    resource: str
    namespace: str | None
    items: list[Object]


@dataclass(frozen=True)
class Changed:
    """One watch event (ADDED, MODIFIED or DELETED)."""

    resource: str
    kind: str
    obj: Object


Message = Relisted | Changed


class GoneError(Exception):
    """The watch's resourceVersion is too old (HTTP 410): list again."""


class ResourceWatch:
    """The list-then-watch loop of one resource in one namespace scope (None = all namespaces)."""

    def __init__(
        self,
        resource: str,
        namespace: str | None,
        list_fn: ListFn,
        watch_fn: WatchFn,
        emit: Callable[[Message], None],
        *,
        watch_timeout_s: int = 300,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ) -> None:
        self.resource = resource
        self.namespace = namespace
        self._list = list_fn
        self._watch = watch_fn
        self._emit = emit
        self._watch_timeout_s = watch_timeout_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._stop = threading.Event()
        self.lists = 0

    def stop(self) -> None:
        """Ask the loop to end (it notices after the current event or watch timeout)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    def run(self) -> None:
        """Loop until stopped."""
        version: str | None = None
        backoff = self._backoff_initial_s
        while not self._stop.is_set():
            try:
                if version is None:
                    items, version = self._list()
                    self.lists += 1
                    self._emit(Relisted(self.resource, self.namespace, items))
                    log.info(
                        "Listed objects",
                        extra={"resource": self.resource, "namespace": self.namespace, "count": len(items)},
                    )
                version = self._watch_once(version)
                backoff = self._backoff_initial_s
            except GoneError:
                log.info("Watch expired, listing again", extra={"resource": self.resource})
                version = None
            except Exception as exc:
                if _status(exc) == 410:
                    version = None
                    continue
                log.warning(
                    "Failed to watch, retrying",
                    extra={"resource": self.resource, "error": repr(exc), "retry_in_s": backoff},
                )
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, self._backoff_max_s)

    def _watch_once(self, version: str) -> str:
        for event in self._watch(version, self._watch_timeout_s):
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise GoneError(obj.get("message", ""))
                raise RuntimeError(f"watch error: {obj.get('reason')}: {obj.get('message')}")
            version = (obj.get("metadata") or {}).get("resourceVersion") or version
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                self._emit(Changed(self.resource, str(kind), obj))
            if self._stop.is_set():
                break
        return version


class ClusterWatcher:
    """Runs the resource watches in threads and applies their messages to the catalog on the event loop."""

    def __init__(
        self,
        settings: GatewaySettings,
        catalog: Catalog,
        on_change: Callable[[], None],
        api_client_factory: Callable[[], Any] | None = None,
        functions_factory: Callable[[Any, str, str | None], tuple[ListFn, WatchFn]] | None = None,
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._on_change = on_change
        self._api_client_factory = api_client_factory or (lambda: build_api_client(settings))
        self._functions_factory = functions_factory or kube_functions
        self._scopes: list[str | None] = list(settings.namespaces) or [None]
        self._pending = {SAMMODELS: set(self._scopes), PODS: set(self._scopes)}
        self._watches: list[ResourceWatch] = []
        self._threads: list[threading.Thread] = []

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start one thread per resource and namespace scope."""

        def emit(message: Message) -> None:
            loop.call_soon_threadsafe(self.apply, message)

        for namespace in self._scopes:
            for resource in (SAMMODELS, PODS):
                api = self._api_client_factory()
                list_fn, watch_fn = self._functions_factory(api, resource, namespace)
                watch = ResourceWatch(
                    resource, namespace, list_fn, watch_fn, emit, watch_timeout_s=self._settings.watch_timeout_s
                )
                thread = threading.Thread(target=watch.run, name=f"watch-{resource}-{namespace or 'all'}", daemon=True)
                self._watches.append(watch)
                self._threads.append(thread)
                thread.start()

    def stop(self) -> None:
        """Signal every watch to end; threads are daemons, so shutdown never waits on a blocked read."""
        for watch in self._watches:
            watch.stop()

    def apply(self, message: Message) -> None:
        """Apply one message to the catalog (event loop side)."""
        catalog = self._catalog
        if isinstance(message, Relisted):
            if message.resource == SAMMODELS:
                changed = catalog.replace_models(message.items, message.namespace)
            else:
                changed = catalog.replace_pods(message.items, message.namespace)
            pending = self._pending[message.resource]
            pending.discard(message.namespace)
            if not pending:
                catalog.mark_synced(message.resource)
        else:
            meta = message.obj.get("metadata") or {}
            namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
            if message.resource == SAMMODELS:
                if message.kind == "DELETED":
                    changed = catalog.delete_model(namespace, name)
                else:
                    changed = catalog.upsert_model(message.obj)
            elif message.kind == "DELETED":
                changed = catalog.delete_pod(namespace, name)
            else:
                changed = catalog.upsert_pod(message.obj)
        if changed:
            self._on_change()


def build_api_client(settings: GatewaySettings) -> Any:
    """A kubernetes ``ApiClient`` from SAM_GATEWAY_KUBECONFIG, $KUBECONFIG, in-cluster, or ~/.kube/config."""
    from kubernetes import client, config

    kubeconfig = settings.kubeconfig or os.environ.get("KUBECONFIG")
    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)
    return config.new_client_from_config()


def kube_functions(api: Any, resource: str, namespace: str | None) -> tuple[ListFn, WatchFn]:
    """List and watch callables for ``resource`` over the real API, returning raw JSON dicts."""
    from kubernetes import client
    from kubernetes.watch.watch import iter_resp_lines

    if resource == SAMMODELS:
        custom = client.CustomObjectsApi(api)
        if namespace is None:
            func: Callable[..., Any] = custom.list_cluster_custom_object
            args: tuple[Any, ...] = (GROUP, VERSION, PLURAL)
        else:
            func = custom.list_namespaced_custom_object
            args = (GROUP, VERSION, namespace, PLURAL)
        kwargs: dict[str, Any] = {}
    else:
        core = client.CoreV1Api(api)
        if namespace is None:
            func, args = core.list_pod_for_all_namespaces, ()
        else:
            func, args = core.list_namespaced_pod, (namespace,)
        kwargs = {"label_selector": MANAGED_BY_SELECTOR}

    def list_fn() -> tuple[list[Object], str]:
        response = func(*args, _preload_content=False, _request_timeout=60, **kwargs)
        body = json.loads(response.data)
        return list(body.get("items") or []), str(body["metadata"]["resourceVersion"])

    def watch_fn(version: str, timeout_s: int) -> Iterator[Object]:
        # A plain watch request, parsed here: kubernetes.watch.Watch's own 410 retry and its deserialize=False
        # path (KeyError on ERROR events) get in the way. The client-side read timeout catches a silently
        # dead connection.
        response = func(
            *args,
            watch=True,
            resource_version=version,
            timeout_seconds=timeout_s,
            allow_watch_bookmarks=True,
            _preload_content=False,
            _request_timeout=(10, timeout_s + 30),
            **kwargs,
        )
        try:
            for line in iter_resp_lines(response):
                if line and not line.isspace():
                    yield json.loads(line)
        finally:
            response.close()
            response.release_conn()

    return list_fn, watch_fn


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None
