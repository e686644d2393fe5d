"""The operator's machinery, wired: watch-fed store, port book, work queue, reconciler and the periodic resync.

Events become work like this (``on_change``, called by the informers for every change that reached the store):

- a SamModel that is new, or whose spec (``generation``), labels, annotations or deletion changed: its key is
  queued at once. A status-only change (the echo of our own status write above all) queues nothing;
- a deleted SamModel is forgotten (its children go with their owner references);
- a child or an encoder pod: its owner's key is queued after ``coalesce_seconds``, so a burst of pod and
  Deployment status events becomes one reconcile. The echo of our own writes never gets here: the store already
  holds the response of the write, with the same resourceVersion;
- every ``resync_interval_seconds`` every SamModel gets a background pass, spread over the interval.

No reconcile starts before every informer has listed its kind (no decision on a half-filled store), so an
operator started on a converged cluster writes nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable, Mapping
from typing import Any, cast

from sam_contract.labels import MANAGED_BY_SELECTOR

from sam_operator import resources
from sam_operator.informer import Informer
from sam_operator.kube import Kube
from sam_operator.ports import PortBook
from sam_operator.reconcile import Reconciler
from sam_operator.settings import OperatorSettings
from sam_operator.store import Key, Store
from sam_operator.workqueue import WorkQueue

__all__ = ["WATCHED", "Controller", "spec_changed"]

log = logging.getLogger(__name__)
MANAGED_SELECTOR = MANAGED_BY_SELECTOR
#: (apiVersion, kind, label selector) of everything the operator watches.
WATCHED: tuple[tuple[str, str, str | None], ...] = (
    (resources.API_VERSION, resources.KIND, None),
    ("apps/v1", "Deployment", MANAGED_SELECTOR),
    ("v1", "Pod", MANAGED_SELECTOR),
    ("v1", "Service", MANAGED_SELECTOR),
    ("v1", "PersistentVolumeClaim", MANAGED_SELECTOR),
    ("policy/v1", "PodDisruptionBudget", MANAGED_SELECTOR),
    ("autoscaling/v2", "HorizontalPodAutoscaler", MANAGED_SELECTOR),
    ("networking.k8s.io/v1", "NetworkPolicy", MANAGED_SELECTOR),
    ("monitoring.coreos.com/v1", "ServiceMonitor", MANAGED_SELECTOR),
    ("keda.sh/v1alpha1", "ScaledObject", MANAGED_SELECTOR),
)
_RETRY_MAX_S = 30.0


def spec_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether a SamModel changed in a way that needs a reconcile (anything but its status and bookkeeping)."""
    a, b = old.get("metadata") or {}, new.get("metadata") or {}
    return any(a.get(k) != b.get(k) for k in ("uid", "generation", "deletionTimestamp", "labels", "annotations"))


def controller_owner(body: Mapping[str, Any]) -> str | None:
    """The name of the SamModel that controls this child, from its owner references."""
    for ref in (body.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("kind") == resources.KIND and ref.get("controller") and ref.get("name"):
            return str(ref["name"])
    return None


class Controller:
    def __init__(self, kube: Kube, settings: OperatorSettings) -> None:
        self.settings = settings
        self.store = Store()
        self.ports = PortBook()
        self.queue = WorkQueue(self._reconcile_key, settings.workers)
        self.reconciler = Reconciler(
            kube,
            settings,
            self.store,
            self.ports,
            watched=self.watched,
            requeue=self.queue.add,
            continue_later=lambda key: self.queue.add_after(key, 0.0),
        )
        self.informers: dict[str, list[Informer]] = {
            kind: [
                Informer(
                    kube,
                    self.store,
                    api_version,
                    kind,
                    self.on_change,
                    namespace=ns,
                    label_selector=selector,
                    watch_timeout_s=settings.watch_timeout_seconds,
                    unavailable_retry_s=settings.discovery_ttl_seconds,
                )
                for ns in (settings.namespaces or [""])
            ]
            for api_version, kind, selector in WATCHED
        }
        self._failures: dict[Hashable, int] = {}
        self._stop = threading.Event()
        self.synced = threading.Event()

    def start(self) -> Controller:
        for informers in self.informers.values():
            for informer in informers:
                informer.start()
        threading.Thread(target=self._open_when_synced, name="sam-sync-gate", daemon=True).start()
        threading.Thread(target=self._resync_loop, name="sam-resync", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.queue.stop()
        for informers in self.informers.values():
            for informer in informers:
                informer.stop()

    def watched(self, kind: str) -> bool:
        """Whether the store holds ``kind`` (every informer of it has listed it and may watch it)."""
        informers = self.informers.get(kind)
        return bool(informers) and all(i.available for i in informers or ())

    # ---- events -> work ------------------------------------------------------------------------------------
    def on_change(self, kind: str, new: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        body = new if new is not None else old
        if body is None:
            return
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        if kind == resources.KIND:
            if new is None:
                self.reconciler.forget(namespace, name)
                return
            self.ports.observe((namespace, name), new)
            if old is None or spec_changed(old, new):
                self.queue.add((namespace, name))
            return
        owner = self.store.owner_of_pod(body) if kind == "Pod" else controller_owner(body)
        if owner:
            self.queue.add_after((namespace, owner), self.settings.coalesce_seconds)

    def _reconcile_key(self, key: Hashable) -> None:
        namespace, name = cast(Key, key)
        if self.reconciler.reconcile_safely(namespace, name):
            self._failures.pop(key, None)
            return
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        self.queue.add_after(key, min(_RETRY_MAX_S, 0.5 * 2 ** (failures - 1)))

    # ---- startup and resync -------------------------------------------------------------------------------
    def _open_when_synced(self) -> None:
        for informers in self.informers.values():
            for informer in informers:
                while not informer.synced.wait(1.0):
                    if self._stop.is_set():
                        return
        log.info("Watches synced", extra={"sammodels": self.store.count(resources.KIND)})
        self.synced.set()
        self.queue.open()

    def _resync_loop(self) -> None:
        """Every SamModel once per interval, in the background lane, spread evenly over the interval."""
        interval = self.settings.resync_interval_seconds
        if self._stop.wait(interval):
            return
        while True:
            keys: list[Key] = sorted(self.store.keys(resources.KIND)) if self.synced.is_set() else []
            step = interval / max(1, len(keys))
            for key in keys:
                self.queue.add(key, urgent=False)
                if self._stop.wait(step):
                    return
            if not keys and self._stop.wait(interval):
                return
