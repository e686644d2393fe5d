"""The gateway's in-memory view of the cluster: which CVAT functions exist and which replicas serve them.

Pure state, no I/O. The watcher (:mod:`sam_gateway.watcher`) feeds it raw Kubernetes object bodies
(dicts shaped like the API's JSON, camelCase keys); the HTTP layer reads :meth:`Catalog.functions`,
:meth:`Catalog.get` and :meth:`Catalog.replicas`.

Contract (docs/architecture.md): a SamModel is a function when ``Ready=True`` and ``status.cvat.enabled``; its
replicas are the Ready, non-terminating pods in the SamModel's namespace matching ``status.selector``
(default: ``app.kubernetes.io/instance=<name>,app.kubernetes.io/component=encoder``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sam_contract.cvat import DEFAULT_MODE, CvatStatus
from sam_contract.labels import COMPONENT_LABEL, ENCODER_COMPONENT, INSTANCE_LABEL

log = logging.getLogger(__name__)

Body = Mapping[str, Any]
ObjectKey = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class Autoscaling:
    """What the activator needs of ``spec.autoscaling`` (only for an autoscaled SamModel)."""

    provider: str  # hpa | keda
    min_replicas: int
    quiet_period_s: int
    spec_replicas: int  # spec.replicas now: 0 while the model sleeps

    @property
    def scales_to_zero(self) -> bool:
        return self.min_replicas == 0


@dataclass(frozen=True)
class Function:
    """One CVAT function, derived from a Ready, CVAT-enabled SamModel."""

    name: str
    namespace: str
    model_name: str
    annotations: Mapping[str, Any]
    description: str
    mode: str
    http_port: int | None
    selector: Mapping[str, str]
    created: str = ""
    resource_version: str = ""
    uid: str = ""
    autoscaling: Autoscaling | None = None

    @property
    def model_key(self) -> ObjectKey:
        """``(namespace, name)`` of the SamModel this function comes from."""
        return (self.namespace, self.model_name)


@dataclass(frozen=True)
class PodState:
    """What the gateway keeps of an encoder pod."""

    namespace: str
    name: str
    labels: Mapping[str, str]
    ready: bool
    address: str | None


@dataclass
class Catalog:
    """Functions and replicas, updated by watch events; all methods return whether anything changed."""

    pod_address_annotation: str | None = None
    encoder_port: int = 8080
    _functions: dict[ObjectKey, Function] = field(default_factory=dict)
    _pods: dict[ObjectKey, PodState] = field(default_factory=dict)
    _synced: set[str] = field(default_factory=set)

    # ----------------------------------------------------------------- SamModels
    def upsert_model(self, body: Body) -> bool:
        """Apply an ADDED/MODIFIED SamModel: list it when Ready and CVAT-enabled, otherwise drop it."""
        key = _key(body)
        function = derive_function(body)
        if function is None:
            return self._functions.pop(key, None) is not None
        if self._functions.get(key) == function:
            return False
        self._functions[key] = function
        return True

    def delete_model(self, namespace: str, name: str) -> bool:
        """Apply a DELETED SamModel."""
        return self._functions.pop((namespace, name), None) is not None

    def replace_models(self, bodies: Iterable[Body], namespace: str | None = None) -> bool:
        """Replace every SamModel (in ``namespace``, or everywhere) with a fresh list result."""
        fresh: dict[ObjectKey, Function] = {}
        for body in bodies:
            function = derive_function(body)
            if function is not None:
                fresh[_key(body)] = function
        kept = {k: v for k, v in self._functions.items() if namespace is not None and k[0] != namespace}
        kept.update(fresh)
        changed = kept != self._functions
        self._functions = kept
        return changed

    # ---------------------------------------------------------------------- pods
    def upsert_pod(self, body: Body) -> bool:
        """Apply an ADDED/MODIFIED encoder pod."""
        key = _key(body)
        pod = self.derive_pod(body)
        if self._pods.get(key) == pod:
            return False
        self._pods[key] = pod
        return True

    def delete_pod(self, namespace: str, name: str) -> bool:
        """Apply a DELETED pod."""
        return self._pods.pop((namespace, name), None) is not None

    def replace_pods(self, bodies: Iterable[Body], namespace: str | None = None) -> bool:
        """Replace every pod (in ``namespace``, or everywhere) with a fresh list result."""
        kept = {k: v for k, v in self._pods.items() if namespace is not None and k[0] != namespace}
        for body in bodies:
            kept[_key(body)] = self.derive_pod(body)
        changed = kept != self._pods
        self._pods = kept
        return changed

    def derive_pod(self, body: Body) -> PodState:
        """Readiness and dial address of a pod body."""
        meta = body.get("metadata") or {}
        status = body.get("status") or {}
        annotations = meta.get("annotations") or {}
        address: str | None = None
        if self.pod_address_annotation:
            # When addresses come from an annotation (test harnesses, where pod IPs lead nowhere), a pod
            # without it is not dialled at all: never fall back to an address outside this machine.
            address = str(annotations.get(self.pod_address_annotation) or "") or None
        elif status.get("podIP"):
            address = f"{status['podIP']}:{self.encoder_port}"
        ready = (
            status.get("phase") == "Running"
            and not meta.get("deletionTimestamp")
            and _condition_true(status.get("conditions"), "Ready")
            and address is not None
        )
        return PodState(
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            labels=dict(meta.get("labels") or {}),
            ready=bool(ready),
            address=address,
        )

    # ------------------------------------------------------------- sync marking
    def mark_synced(self, resource: str) -> None:
        """Record that the initial list of ``resource`` ("sammodels" or "pods") has been applied."""
        self._synced.add(resource)

    @property
    def synced(self) -> bool:
        """True once both SamModels and pods have been listed at least once."""
        return {"sammodels", "pods"} <= self._synced

    # ------------------------------------------------------------------ queries
    def functions(self, namespace: str | None = None) -> list[Function]:
        """Listed functions, one per name (see :meth:`get` for name clashes), sorted by name."""
        by_name: dict[str, Function] = {}
        for function in self._candidates(namespace):
            by_name.setdefault(function.name, function)
        return [by_name[name] for name in sorted(by_name)]

    def get(self, name: str, namespace: str | None = None) -> Function | None:
        """The function called ``name``.

        Two SamModels may publish the same function name (in different namespaces); the oldest wins, so the
        answer does not flap while both exist.
        """
        for function in self._candidates(namespace):
            if function.name == name:
                return function
        return None

    def by_port(self, port: int) -> Function | None:
        """The listed function whose direct-mode port is ``port``."""
        for function in self.functions():
            if function.http_port == port:
                return function
        return None

    def replicas(self, function: Function) -> list[str]:
        """Addresses (``host:port``) of the function's ready replicas, sorted."""
        addresses = {
            pod.address
            for pod in self._pods.values()
            if pod.ready
            and pod.address
            and pod.namespace == function.namespace
            and all(pod.labels.get(k) == v for k, v in function.selector.items())
        }
        return sorted(addresses)

    def _candidates(self, namespace: str | None) -> list[Function]:
        functions = [f for f in self._functions.values() if namespace is None or f.namespace == namespace]
        return sorted(functions, key=lambda f: (f.created or "~", f.namespace, f.model_name))


def derive_function(body: Body) -> Function | None:
    """The function a SamModel body publishes, or None when it must not be listed."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    cvat = CvatStatus.from_status(status.get("cvat"))
    if cvat is None or not cvat.enabled or not cvat.function_name:
        return None
    if not _condition_true(status.get("conditions"), "Ready"):
        return None
    if meta.get("deletionTimestamp"):
        return None
    name = str(meta.get("name", ""))
    return Function(
        name=cvat.function_name,
        namespace=str(meta.get("namespace", "")),
        model_name=name,
        annotations=dict(cvat.annotations),
        description=cvat.description,
        mode=cvat.mode or DEFAULT_MODE,
        http_port=cvat.http_port or None,
        selector=parse_selector(status.get("selector"), name),
        created=str(meta.get("creationTimestamp") or ""),
        resource_version=str(meta.get("resourceVersion") or ""),
        uid=str(meta.get("uid") or ""),
        autoscaling=derive_autoscaling(body.get("spec") or {}),
    )


def derive_autoscaling(spec: Mapping[str, Any]) -> Autoscaling | None:
    """``spec.autoscaling`` with the CRD's defaults, when enabled (the API server applied them already)."""
    autoscaling = spec.get("autoscaling") or {}
    if not isinstance(autoscaling, Mapping) or not autoscaling.get("enabled"):
        return None
    try:
        return Autoscaling(
            provider=str(autoscaling.get("provider") or "hpa"),
            min_replicas=int(autoscaling.get("minReplicas", 1)),
            quiet_period_s=int(autoscaling.get("quietPeriodSeconds", 900)),
            spec_replicas=int(spec.get("replicas", 1)),
        )
    except (TypeError, ValueError):
        return None


def parse_selector(selector: object, model_name: str) -> dict[str, str]:
    """Equality-based label selector (``k=v,k=v``) from ``status.selector``.

    Falls back to the instance + component labels when the selector is absent or uses set-based syntax the
    gateway does not evaluate.
    """
    default = {INSTANCE_LABEL: model_name, COMPONENT_LABEL: ENCODER_COMPONENT}
    if not isinstance(selector, str) or not selector.strip():
        return default
    parsed: dict[str, str] = {}
    for term in selector.split(","):
        key, sep, value = term.partition("=")
        key = key.strip().rstrip("=!")
        value = value.lstrip("=").strip()
        if not sep or not key or "!" in term or " in " in term or " notin " in term:
            log.warning("Ignored unsupported selector", extra={"selector": selector})
            return default
        parsed[key] = value
    return parsed


def _condition_true(conditions: object, kind: str) -> bool:
    if not isinstance(conditions, list):
        return False
    return any(isinstance(c, Mapping) and c.get("type") == kind and c.get("status") == "True" for c in conditions)


def _key(body: Body) -> ObjectKey:
    meta = body.get("metadata") or {}
    return (str(meta.get("namespace", "")), str(meta.get("name", "")))
