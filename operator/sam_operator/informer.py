"""List-then-watch one kind into the :class:`~sam_operator.store.Store`, forever (client-go's informer, small).

Each informer is a thread: it lists (replacing what the store held of that kind, so that deletions missed while
disconnected are noticed), then watches from the list's resourceVersion, with bookmarks. A watch that ends is
resumed from the last version seen; ``410 Gone`` (or an ERROR event) means a fresh list; any other failure (API
server restarting, etcd down, a connection that went silent past the client-side timeout) is retried with
backoff. Every change that reaches the store is handed to ``on_change(kind, new, old)`` (``new`` None: deleted).

A kind the operator may not list (RBAC) or that the cluster does not serve (ServiceMonitor without
prometheus-operator) marks the informer ``synced`` but not ``available``: the reconciler then GETs that kind as
before, and the informer tries again every ``unavailable_retry_s``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from sam_operator.kube import Kube
from sam_operator.store import Store

__all__ = ["ChangeHandler", "Informer"]

log = logging.getLogger(__name__)
ChangeHandler = Callable[[str, dict[str, Any] | None, dict[str, Any] | None], None]
_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)


class _Relist(Exception):
    """The watch cannot resume (410 Gone, ERROR event): list again."""


class Informer:
    def __init__(
        self,
        kube: Kube,
        store: Store,
        api_version: str,
        kind: str,
        on_change: ChangeHandler,
        *,
        namespace: str = "",
        label_selector: str | None = None,
        watch_timeout_s: int = 30,
        unavailable_retry_s: float = 30.0,
    ) -> None:
        self.kube, self.store = kube, store
        self.api_version, self.kind = api_version, kind
        self.namespace, self.label_selector = namespace, label_selector
        self.on_change = on_change
        self.watch_timeout_s = watch_timeout_s
        self.unavailable_retry_s = unavailable_retry_s
        #: Set once the first list is in the store, or once the kind turned out not to be listable.
        self.synced = threading.Event()
        #: Whether the store holds this kind (the reconciler reads it from there instead of GETting it).
        self.available = False
        self._stop = threading.Event()
        where = namespace or "all namespaces"
        self._thread = threading.Thread(target=self._run, name=f"informer-{kind}-{where}", daemon=True)

    def start(self) -> Informer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                if not self.available and not self.kube.may_watch(self.api_version, self.kind, self.namespace):
                    self._unavailable("RBAC grants no list/watch", logging.WARNING)
                    continue
                version = self._relist()
                failures = 0
                while not self._stop.is_set():
                    version = self._watch(version)
            except _Relist:
                continue
            except ResourceNotFoundError:
                self._unavailable("the cluster does not serve it", logging.INFO)
            except ApiException as exc:
                if exc.status in (403, 404):
                    level = logging.WARNING if exc.status == 403 else logging.INFO  # RBAC is worth a warning
                    self._unavailable(f"{exc.status} {exc.reason}", level)
                elif exc.status == 410:
                    continue
                else:
                    failures = self._backoff(failures, exc)
            except Exception as exc:  # connection refused, reset, timed out: the API server will be back
                failures = self._backoff(failures, exc)

    def _unavailable(self, why: str, level: int) -> None:
        if self.available or not self.synced.is_set():
            log.log(level, "Not watching %s (%s): reading it per reconcile instead", self.kind, why)
        self.available = False
        self.synced.set()
        self._stop.wait(self.unavailable_retry_s)

    def _backoff(self, failures: int, exc: Exception) -> int:
        delay = _BACKOFF_S[min(failures, len(_BACKOFF_S) - 1)]
        log.info("Watch of %s interrupted (%s); again in %.1fs", self.kind, type(exc).__name__, delay)
        self._stop.wait(delay)
        return failures + 1

    def _relist(self) -> str:
        items, version = self.kube.list_raw(self.api_version, self.kind, self.namespace, self.label_selector)
        for item in items:  # a list's items lack them; the drift check compares them
            item.setdefault("apiVersion", self.api_version)
            item.setdefault("kind", self.kind)
        for new, old in self.store.replace(self.kind, items, self.namespace):
            self.on_change(self.kind, new, old)  # new None: deleted while we were not watching
        self.available = True
        self.synced.set()
        return version

    def _watch(self, version: str) -> str:
        for event in self.kube.watch_raw(
            self.api_version, self.kind, self.namespace, self.label_selector, version, self.watch_timeout_s
        ):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                raise _Relist(str(obj.get("message") or obj))
            version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
            if kind == "BOOKMARK":
                continue
            if kind == "DELETED":
                old = self.store.delete(self.kind, *_key(obj))
                if old is not None:
                    self.on_change(self.kind, None, old)
            else:
                changed, old = self.store.put(self.kind, obj)
                if changed:
                    self.on_change(self.kind, self.store.get(self.kind, *_key(obj)), old)
            if self._stop.is_set():
                break
        return version


def _key(body: dict[str, Any]) -> tuple[str, str]:
    meta = body.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")
