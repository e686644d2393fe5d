"""Orchestration: one idempotent reconcile of a SamModel — gather, render, apply what drifted, prune, status.

Called by the kopf handlers (events of the SamModel and its children) and by the periodic resync. The order is
fixed: read the SamModel, render the desired children (pure), apply those whose live copy lacks a rendered field,
delete children that are no longer desired, then derive status from live state and write it only if it changed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from sam_operator import conditions, metrics, naming, resources
from sam_operator.drift import needs_apply
from sam_operator.kube import Kube
from sam_operator.render import build_children, owner_reference
from sam_operator.settings import OperatorSettings
from sam_operator.status import Observed, derive_status

log = logging.getLogger(__name__)

#: Every kind the operator may create for a SamModel, so that ones no longer desired can be pruned.
CHILD_KINDS: tuple[tuple[str, str], ...] = (
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("v1", "PersistentVolumeClaim"),
    ("policy/v1", "PodDisruptionBudget"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
)
SERVICE_MONITOR = ("monitoring.coreos.com/v1", "ServiceMonitor")


@dataclass
class ReconcileResult:
    applied: list[str]
    deleted: list[str]
    status_written: bool


class Reconciler:
    """Holds the API access and settings; serialises reconciles of the same SamModel."""

    def __init__(self, kube: Kube, settings: OperatorSettings) -> None:
        self.kube = kube
        self.settings = settings
        self.reconcile_count = 0
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._conditions: dict[tuple[str, str], dict[str, str]] = {}

    def _lock(self, namespace: str, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    def forget(self, namespace: str, name: str) -> None:
        with self._locks_guard:
            self._locks.pop((namespace, name), None)
            self._conditions.pop((namespace, name), None)
            self._export_condition_counts()

    def _record_conditions(self, namespace: str, name: str, status: dict[str, Any] | None) -> None:
        """Remember this SamModel's conditions (None: it is gone) and re-export the counts."""
        with self._locks_guard:
            if status is None:
                self._conditions.pop((namespace, name), None)
            else:
                self._conditions[(namespace, name)] = {
                    c["type"]: c["status"] for c in status.get("conditions") or [] if "type" in c and "status" in c
                }
            self._export_condition_counts()

    def _export_condition_counts(self) -> None:
        """``sam_operator_sammodels{condition,status}``: how many SamModels are in each condition state."""
        counts: dict[tuple[str, str], int] = {
            (t, s): 0 for t in conditions.CONDITION_TYPES for s in ("True", "False", "Unknown")
        }
        for conds in self._conditions.values():
            for type_, status in conds.items():
                counts[(type_, status)] = counts.get((type_, status), 0) + 1
        for (type_, status), count in counts.items():
            metrics.SAMMODELS.labels(condition=type_, status=status).set(count)

    def reconcile_all(self, namespaces: Iterable[str] = ()) -> None:
        for body in self._list_sammodels(namespaces):
            meta = body["metadata"]
            self.reconcile_safely(meta["namespace"], meta["name"])

    def reconcile_safely(self, namespace: str, name: str) -> ReconcileResult | None:
        """Reconcile and record the outcome; API errors are logged and retried by the next event or resync."""
        started = time.monotonic()
        try:
            with self._lock(namespace, name):
                result = self.reconcile(namespace, name)
        except ApiException as exc:
            metrics.RECONCILES.labels(result="error").inc()
            log.warning("Reconcile failed: %s %s", exc.status, exc.reason,
                        extra={"object": f"{namespace}/{name}"})
            return None
        except Exception:
            metrics.RECONCILES.labels(result="error").inc()
            log.exception("Reconcile failed", extra={"object": f"{namespace}/{name}"})
            return None
        finally:
            metrics.RECONCILE_DURATION.observe(time.monotonic() - started)
        self.reconcile_count += 1
        metrics.RECONCILES.labels(result="success").inc()
        return result

    def reconcile(self, namespace: str, name: str) -> ReconcileResult | None:
        body = self.kube.get(resources.API_VERSION, resources.KIND, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            self._record_conditions(namespace, name, None)
            return None  # gone or going: owner references clean up the children
        parsed = resources.parse_sammodel(body)
        if isinstance(parsed, resources.InvalidSpec):
            log.warning("Invalid spec: %s", parsed.message, extra={"object": f"{namespace}/{name}"})
            status = derive_status(body, Observed(), datetime.now(UTC), self.settings)
            self._record_conditions(namespace, name, status)
            return ReconcileResult([], [], self._write_status(body, status))

        has_service_monitor_api = self.kube.has_api(*SERVICE_MONITOR)
        desired = build_children(parsed, self.settings, service_monitor_api=has_service_monitor_api)
        owner = owner_reference(body)
        applied: list[str] = []
        for child in desired:
            child["metadata"].setdefault("namespace", namespace)
            child["metadata"]["ownerReferences"] = [owner]
            live = self.kube.get(child["apiVersion"], child["kind"], namespace, child["metadata"]["name"])
            if needs_apply(child, live):
                self.kube.apply(child)
                applied.append(f"{child['kind']}/{child['metadata']['name']}")
        deleted = self._prune(body, desired, has_service_monitor_api)
        observed = self._observe(body, parsed)
        status = derive_status(body, observed, datetime.now(UTC), self.settings)
        self._record_conditions(namespace, name, status)
        return ReconcileResult(applied, deleted, self._write_status(body, status))

    # ---- helpers -------------------------------------------------------------------------------------------
    def _prune(self, body: dict[str, Any], desired: list[dict[str, Any]], has_sm_api: bool) -> list[str]:
        namespace, uid = body["metadata"]["namespace"], body["metadata"]["uid"]
        wanted = {(c["kind"], c["metadata"]["name"]) for c in desired}
        candidates = {naming.child_name(body["metadata"]["name"]), naming.pvc_name(body["metadata"]["name"])}
        deleted: list[str] = []
        for api_version, kind in CHILD_KINDS:
            if (api_version, kind) == SERVICE_MONITOR and not has_sm_api:
                continue
            for child_name in candidates:
                if (kind, child_name) in wanted:
                    continue
                live = self.kube.get(api_version, kind, namespace, child_name)
                owners = (live or {}).get("metadata", {}).get("ownerReferences") or []
                if live and any(o.get("uid") == uid for o in owners):
                    self.kube.delete(api_version, kind, namespace, child_name)
                    deleted.append(f"{kind}/{child_name}")
        return deleted

    def _observe(self, body: dict[str, Any], model: resources.SamModel) -> Observed:
        name, namespace = model.name, model.namespace
        deployment = self.kube.get("apps/v1", "Deployment", namespace, naming.child_name(name))
        selector = f"app.kubernetes.io/instance={naming.instance_label_value(name)},app.kubernetes.io/component=encoder"
        pods = self.kube.list("v1", "Pod", namespace, label_selector=selector)
        pvc = None
        if model.spec.cache.shared_volume.enabled:
            pvc = self.kube.get("v1", "PersistentVolumeClaim", namespace, naming.pvc_name(name))
        return Observed(deployment=deployment, pods=pods, pvc=pvc, taken_http_ports=self._taken_ports(body))

    def _list_sammodels(self, namespaces: Iterable[str] = ()) -> list[dict[str, Any]]:
        names = list(namespaces)
        if not names:
            return self.kube.list(resources.API_VERSION, resources.KIND, namespace="")
        return [b for ns in names for b in self.kube.list(resources.API_VERSION, resources.KIND, namespace=ns)]

    def _taken_ports(self, body: dict[str, Any]) -> frozenset[int]:
        """Direct-mode ports this SamModel must not use: those of the other SamModels.

        Two SamModels reconciled concurrently (e.g. all at once after an operator start) can both pick the same
        free port. So a kept port is checked too: when another SamModel holds the same port, the senior one
        (older, then by namespace/name) keeps it and the junior one moves, which converges on distinct ports.
        """
        meta = body["metadata"]
        if not meta.get("uid"):
            return frozenset()
        mine = ((body.get("status") or {}).get("cvat") or {}).get("httpPort")
        taken: set[int] = set()
        for other in self._list_sammodels(self.settings.namespaces):
            port = ((other.get("status") or {}).get("cvat") or {}).get("httpPort")
            if other["metadata"]["uid"] == meta["uid"] or not isinstance(port, int):
                continue
            if port == mine and _seniority(body) < _seniority(other):
                continue  # we keep it; the other one moves on its own reconcile
            taken.add(port)
        return frozenset(taken)

    def _write_status(self, body: dict[str, Any], status: dict[str, Any]) -> bool:
        if (body.get("status") or {}) == status:
            return False
        meta = body["metadata"]
        self.kube.patch_status(resources.GROUP, resources.VERSION, resources.PLURAL, meta["namespace"],
                               meta["name"], _with_removals(body.get("status") or {}, status))
        ready = conditions.find_condition(status.get("conditions"), conditions.READY)
        log.info("Updated status", extra={"object": f"{meta['namespace']}/{meta['name']}",
                                          "ready": (ready or {}).get("status")})
        return True


def _seniority(body: dict[str, Any]) -> tuple[str, str, str, str]:
    """Sort key: who keeps a contested direct-mode port (the smallest key wins)."""
    meta = body["metadata"]
    return (str(meta.get("creationTimestamp") or "~"), str(meta.get("namespace", "")), str(meta.get("name", "")),
            str(meta.get("uid", "")))


def _with_removals(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning ``old`` into ``new``: keys that disappeared are set to null."""
    patch: dict[str, Any] = dict(new)
    for key in old:
        if key not in new:
            patch[key] = None
    return patch
