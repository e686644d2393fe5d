"""Orchestration: one idempotent reconcile of a SamModel — render, apply what drifted, prune, status.

Called by the work queue's workers (:mod:`sam_operator.controller`), at most once at a time per SamModel. Reads
come from the watch-fed :class:`~sam_operator.store.Store` (a kind whose informer is not available, for lack of
RBAC or of the API, is read with a GET instead), so the cost of one reconcile does not depend on how many other
SamModels exist. The order is fixed: take the SamModel from the store, render the desired children (pure),
apply those whose live copy lacks a rendered field, delete children that are no longer desired, then derive
status from live state and write it only if it changed. Every write's response goes back into the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import replace as dataclass_replace
from datetime import UTC, datetime
from typing import Any

from sam_contract.labels import COMPONENT_LABEL, ENCODER_COMPONENT, INSTANCE_LABEL

from sam_operator import conditions, metrics, naming, resources
from sam_operator.drift import needs_apply
from sam_operator.kube import ApiError, Kube
from sam_operator.ports import PortBook, choose_http_port, status_port
from sam_operator.render import build_children, owner_reference
from sam_operator.settings import OperatorSettings
from sam_operator.status import Observed, derive_status
from sam_operator.store import Key, Store

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
    ("keda.sh/v1alpha1", "ScaledObject"),
)
SERVICE_MONITOR = ("monitoring.coreos.com/v1", "ServiceMonitor")
SCALED_OBJECT = ("keda.sh/v1alpha1", "ScaledObject")
#: Kinds served only where an add-on is installed: neither rendered nor pruned without their API.
OPTIONAL_KINDS = (SERVICE_MONITOR, SCALED_OBJECT)


@dataclass
class ReconcileResult:
    applied: list[str]
    deleted: list[str]
    status_written: bool


class Reconciler:
    """Reconciles one SamModel at a time from the store; the work queue makes sure no key runs twice at once.

    ``watched(kind)`` says whether the store holds ``kind`` (its informer listed it); ``requeue(key)`` asks for
    another pass of a SamModel (one that must give up a direct-mode port this one keeps). With ``continue_later``,
    a pass that has just created a Deployment stops there and asks for a prompt second pass (other children,
    status): starting the pods is what takes long, so a burst of new SamModels gets all its Deployments first.
    """

    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        store: Store | None = None,
        ports: PortBook | None = None,
        watched: Callable[[str], bool] = lambda kind: False,
        requeue: Callable[[Key], None] = lambda key: None,
        continue_later: Callable[[Key], None] | None = None,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.store = store or Store()
        self.ports = ports or PortBook()
        self.watched = watched
        self.requeue = requeue
        self.continue_later = continue_later
        self.reconcile_count = 0
        self._conditions: dict[Key, dict[str, str]] = {}
        for type_ in conditions.CONDITION_TYPES:  # every series exists from the start, at 0
            for value in ("True", "False", "Unknown"):
                metrics.SAMMODELS.labels(condition=type_, status=value)

    def forget(self, namespace: str, name: str) -> None:
        self.ports.forget((namespace, name))
        self._record_conditions(namespace, name, None)

    def _record_conditions(self, namespace: str, name: str, status: dict[str, Any] | None) -> None:
        """Remember this SamModel's conditions (None: it is gone) and move the per-condition counts."""
        key = (namespace, name)
        new = (
            {}
            if status is None
            else {c["type"]: c["status"] for c in status.get("conditions") or [] if "type" in c and "status" in c}
        )
        old = self._conditions.pop(key, {}) if status is None else self._conditions.get(key, {})
        if status is not None:
            self._conditions[key] = new
        for type_, value in old.items():
            if new.get(type_) != value:
                metrics.SAMMODELS.labels(condition=type_, status=value).dec()
        for type_, value in new.items():
            if old.get(type_) != value:
                metrics.SAMMODELS.labels(condition=type_, status=value).inc()

    def reconcile_safely(self, namespace: str, name: str) -> bool:
        """Reconcile and record the outcome; a failure is logged and False returned (the caller retries later)."""
        started = time.monotonic()
        try:
            self.reconcile(namespace, name)
        except ApiError as exc:
            metrics.RECONCILES.labels(result="error").inc()
            log.warning("Reconcile failed: %s %s", exc.status, exc.reason, extra={"object": f"{namespace}/{name}"})
            return False
        except Exception:
            metrics.RECONCILES.labels(result="error").inc()
            log.exception("Reconcile failed", extra={"object": f"{namespace}/{name}"})
            return False
        finally:
            metrics.RECONCILE_DURATION.observe(time.monotonic() - started)
        self.reconcile_count += 1
        metrics.RECONCILES.labels(result="success").inc()
        return True

    def reconcile(self, namespace: str, name: str) -> ReconcileResult | None:
        body = self._read(resources.API_VERSION, resources.KIND, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            self._record_conditions(namespace, name, None)
            return None  # gone or going: owner references clean up the children
        parsed = resources.parse_sammodel(body)
        if isinstance(parsed, resources.InvalidSpec):
            log.warning("Invalid spec: %s", parsed.message, extra={"object": f"{namespace}/{name}"})
            status = derive_status(body, Observed(), datetime.now(UTC))
            self._record_conditions(namespace, name, status)
            return ReconcileResult([], [], self._write_status(body, status))

        served = self._served_optional_kinds(parsed)
        desired = build_children(
            parsed, self.settings, service_monitor_api=SERVICE_MONITOR in served, keda_api=SCALED_OBJECT in served
        )
        owner = owner_reference(body)
        applied: list[str] = []
        for child in desired:
            child["metadata"].setdefault("namespace", namespace)
            child["metadata"]["ownerReferences"] = [owner]
            live = self._read(child["apiVersion"], child["kind"], namespace, child["metadata"]["name"])
            if needs_apply(child, live):
                stored = self.kube.apply(child)
                if self.watched(child["kind"]):
                    self.store.put(child["kind"], stored)
                applied.append(f"{child['kind']}/{child['metadata']['name']}")
                if live is None and child["kind"] == "Deployment" and self.continue_later is not None:
                    self.continue_later((namespace, name))
                    return ReconcileResult(applied, [], False)
        deleted = self._prune(body, desired, served)
        observed = self._observe(parsed)
        key = (namespace, name)
        with self.ports.lock:  # the port decision and the status derived from it are one step
            port = choose_http_port(
                f"{namespace}/{name}",
                enabled=parsed.spec.cvat.enabled,
                kept=status_port(body),
                taken=self.ports.holding(key, body),
                base=self.settings.direct_port_base,
                size=self.settings.direct_port_range_size,
            )
            status = derive_status(body, dataclass_replace(observed, http_port=port), datetime.now(UTC))
            juniors = self.ports.decide(key, port)
        for junior in juniors:
            self.requeue(junior)
        self._record_conditions(namespace, name, status)
        return ReconcileResult(applied, deleted, self._write_status(body, status))

    # ---- helpers -------------------------------------------------------------------------------------------
    def _served_optional_kinds(self, model: resources.SamModel) -> set[tuple[str, str]]:
        """The add-on kinds to render and prune. KEDA's API is asked about only when the model wants KEDA; a
        watched kind is pruned from the store anyway (a model that moved from keda to hpa loses its ScaledObject).
        """
        served = {SERVICE_MONITOR} if self.kube.has_api(*SERVICE_MONITOR) else set()
        wants_keda = model.spec.autoscaling.enabled and model.spec.autoscaling.provider == "keda"
        if (wants_keda and self.kube.has_api(*SCALED_OBJECT)) or self.watched(SCALED_OBJECT[1]):
            served.add(SCALED_OBJECT)
        return served

    def _read(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The live object: from the store when its kind is watched, else a GET."""
        if self.watched(kind):
            return self.store.get(kind, namespace, name)
        return self.kube.get(api_version, kind, namespace, name)

    def _prune(self, body: dict[str, Any], desired: list[dict[str, Any]], served: set[tuple[str, str]]) -> list[str]:
        namespace, uid = body["metadata"]["namespace"], body["metadata"]["uid"]
        wanted = {(c["kind"], c["metadata"]["name"]) for c in desired}
        candidates = {naming.child_name(body["metadata"]["name"]), naming.pvc_name(body["metadata"]["name"])}
        deleted: list[str] = []
        for api_version, kind in CHILD_KINDS:
            if (api_version, kind) in OPTIONAL_KINDS and (api_version, kind) not in served:
                continue
            for child_name in candidates:
                if (kind, child_name) in wanted:
                    continue
                live = self._read(api_version, kind, namespace, child_name)
                owners = (live or {}).get("metadata", {}).get("ownerReferences") or []
                if live and any(o.get("uid") == uid for o in owners):
                    self.kube.delete(api_version, kind, namespace, child_name)
                    if self.watched(kind):
                        self.store.delete(kind, namespace, child_name)
                    deleted.append(f"{kind}/{child_name}")
        return deleted

    def _observe(self, model: resources.SamModel) -> Observed:
        name, namespace = model.name, model.namespace
        deployment = self._read("apps/v1", "Deployment", namespace, naming.child_name(name))
        if self.watched("Pod"):
            pods = self.store.pods(namespace, name)
        else:
            selector = f"{INSTANCE_LABEL}={naming.instance_label_value(name)},{COMPONENT_LABEL}={ENCODER_COMPONENT}"
            pods = self.kube.list("v1", "Pod", namespace, label_selector=selector)
        pods = [
            p for p in pods if ((p.get("metadata") or {}).get("labels") or {}).get(COMPONENT_LABEL) == ENCODER_COMPONENT
        ]
        pvc = None
        if model.spec.cache.shared_volume.enabled:
            pvc = self._read("v1", "PersistentVolumeClaim", namespace, naming.pvc_name(name))
        return Observed(deployment=deployment, pods=pods, pvc=pvc)

    def _write_status(self, body: dict[str, Any], status: dict[str, Any]) -> bool:
        if (body.get("status") or {}) == status:
            return False
        meta = body["metadata"]
        stored = self.kube.patch_status(
            resources.GROUP,
            resources.VERSION,
            resources.PLURAL,
            meta["namespace"],
            meta["name"],
            _with_removals(body.get("status") or {}, status),
        )
        if stored is not None and self.watched(resources.KIND):
            changed, _ = self.store.put(resources.KIND, stored)
            if changed:
                self.ports.observe((meta["namespace"], meta["name"]), stored)
        ready = conditions.find_condition(status.get("conditions"), conditions.READY)
        log.info(
            "Updated status",
            extra={"object": f"{meta['namespace']}/{meta['name']}", "ready": (ready or {}).get("status")},
        )
        return True


def _with_removals(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning ``old`` into ``new``: keys that disappeared are set to null."""
    patch: dict[str, Any] = dict(new)
    for key in old:
        if key not in new:
            patch[key] = None
    return patch
