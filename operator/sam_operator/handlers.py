"""The only kopf-decorated module: thin wrappers that turn watch events into calls of ``reconcile``.

Level-based: every event of a SamModel or of one of its encoder Deployments/pods, and a periodic resync, runs
the same idempotent :func:`sam_operator.reconcile.reconcile`. The handlers are ``on.event`` handlers, so kopf
stores no progress annotations and adds no finalizers on our objects: a no-op reconcile makes no writes at all.
Children are cleaned up by owner references.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import kopf

from sam_operator import resources
from sam_operator.kube import Kube, load_api_client
from sam_operator.reconcile import Reconciler
from sam_operator.settings import OperatorSettings

MANAGED = {"app.kubernetes.io/managed-by": "sam-operator"}
log = logging.getLogger(__name__)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Build our settings and API access once; tune kopf for an operator that writes only on change."""
    op_settings: OperatorSettings = memo.get("settings") or OperatorSettings()
    memo["settings"] = op_settings
    memo["reconciler"] = Reconciler(Kube(load_api_client()), op_settings)
    settings.peering.standalone = True
    settings.posting.level = logging.WARNING  # warnings and errors become Events on the SamModel
    settings.watching.server_timeout = 60
    settings.watching.client_timeout = 90
    settings.watching.reconnect_backoff = 1.0
    settings.networking.error_backoffs = [1, 2, 5, 10]
    stop = threading.Event()
    memo["resync_stop"] = stop
    thread = threading.Thread(target=_resync_loop, args=(memo["reconciler"], op_settings, stop),
                              name="sam-resync", daemon=True)
    thread.start()


@kopf.on.cleanup()
def stop_resync(memo: kopf.Memo, **_: Any) -> None:
    stop = memo.get("resync_stop")
    if stop is not None:
        stop.set()


def _resync_loop(reconciler: Reconciler, settings: OperatorSettings, stop: threading.Event) -> None:
    """Periodically reconcile every SamModel, so drift nobody announced by an event is still repaired."""
    while not stop.wait(settings.resync_interval_seconds):
        try:
            reconciler.reconcile_all(settings.namespaces)
        except Exception:  # the loop must survive API outages; the next round retries
            log.exception("Resync failed")


@kopf.on.event(resources.GROUP, resources.VERSION, resources.PLURAL)
def sammodel_event(event: kopf.RawEvent, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    if not namespace:
        return
    if event.get("type") == "DELETED":
        memo["reconciler"].forget(namespace, name)
        return
    memo["reconciler"].reconcile_safely(namespace, name)


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("", "v1", "pods", labels=MANAGED)
def child_event(labels: Mapping[str, str], namespace: str | None, memo: Any, **_: Any) -> None:
    owner = labels.get("app.kubernetes.io/instance")
    if owner and namespace:
        memo["reconciler"].reconcile_safely(namespace, owner)


@kopf.on.probe(id="reconciles")
def reconcile_probe(memo: kopf.Memo, **_: Any) -> int:
    reconciler = memo.get("reconciler")
    return reconciler.reconcile_count if reconciler else 0
