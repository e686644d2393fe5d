"""The only kopf-decorated module: kopf hosts the process (startup, cleanup, liveness probe); the work is ours.

At startup it builds the :class:`~sam_operator.controller.Controller`: informers that list and watch SamModels,
their children and encoder pods into an in-memory store, and a work queue whose bounded pool of workers runs the
idempotent :func:`sam_operator.reconcile.Reconciler.reconcile` (level-based; triggered by changes, coalesced per
SamModel, and by a periodic resync). No kopf resource handler is registered, so kopf stores no progress
annotations and adds no finalizers on our objects: a no-op reconcile makes no writes at all. Children are
cleaned up by owner references.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from sam_operator.controller import Controller
from sam_operator.kube import Kube, load_api_client
from sam_operator.settings import OperatorSettings

log = logging.getLogger(__name__)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Build our settings, API access and controller once; start the watches and the workers."""
    op_settings: OperatorSettings = memo.get("settings") or OperatorSettings()
    memo["settings"] = op_settings
    settings.peering.standalone = True
    settings.posting.level = logging.WARNING  # warnings and errors become Events on the SamModel
    kube = Kube(
        load_api_client(pool_size=op_settings.workers + 16),
        discovery_ttl=op_settings.discovery_ttl_seconds,
        field_manager=op_settings.field_manager,
    )
    memo["controller"] = Controller(kube, op_settings).start()


@kopf.on.cleanup()
def stop_controller(memo: kopf.Memo, **_: Any) -> None:
    controller = memo.get("controller")
    if controller is not None:
        controller.stop()


@kopf.on.probe(id="reconciles")
def reconcile_probe(memo: kopf.Memo, **_: Any) -> int:
    controller = memo.get("controller")
    return controller.reconciler.reconcile_count if controller else 0
