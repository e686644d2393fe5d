"""An in-memory API server at the operator's own boundary (:class:`sam_operator.kube.Kube`), and a call counter.

``MemoryKube`` answers the calls the reconciler, the informers and the controller make, with the semantics of the
real API server that the operator relies on (tests/integration/operator/test_reconcile_contract.py runs the same
scenarios against the real server, so this fake cannot drift from it):

- ``apply`` (server-side apply, one field manager): creates the object, or replaces the fields it owns; the
  server sets ``uid``, ``creationTimestamp``, ``generation`` (bumped when ``spec`` changes) and
  ``resourceVersion`` (bumped only when something changed: an apply that changes nothing is no write);
  ``status`` is never touched by an apply;
- ``patch_status``: a JSON merge patch of the status subresource (``None`` removes a key); None when the object
  is gone; ``get`` of a missing object is None; ``delete`` of a missing one is silent;
- ``list``: equality-based label selectors; a list's items carry no ``apiVersion``/``kind`` (``list_raw``).

``failures`` makes the next calls of a verb raise (an :class:`ApiException`, like the real client).
"""

from __future__ import annotations

import copy
import itertools
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from typing import Any

from kubernetes.client.exceptions import ApiException

__all__ = ["BUILT_IN_KINDS", "WRITE_VERBS", "CountingKube", "MemoryKube"]

#: Kinds every cluster serves; optional ones (ServiceMonitor, ScaledObject) only when passed as ``served``.
BUILT_IN_KINDS: frozenset[tuple[str, str]] = frozenset(
    {
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("v1", "Pod"),
        ("v1", "PersistentVolumeClaim"),
        ("policy/v1", "PodDisruptionBudget"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("samoperator.io/v1alpha1", "SamModel"),
    }
)
WRITE_VERBS = ("apply", "delete", "patch_status")
_SERVER_METADATA = ("uid", "creationTimestamp", "generation", "resourceVersion")

Object = dict[str, Any]


def _matches(labels: dict[str, str], selector: str | None) -> bool:
    for term in filter(None, (selector or "").split(",")):
        key, _, value = term.partition("=")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


def _merge_patch(target: Object, patch: dict[str, Any]) -> Object:
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge_patch(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class MemoryKube:
    """In-memory objects by (kind, namespace, name); every call counted in ``calls``, every write in ``writes``."""

    def __init__(self, served: Iterable[tuple[str, str]] = ()) -> None:
        self.served = set(BUILT_IN_KINDS) | set(served)
        self.objects: dict[tuple[str, str, str], Object] = {}
        self.calls: Counter[str] = Counter()
        self.writes: list[tuple[str, str, str]] = []  # (verb, kind, name)
        self.failures: dict[str, deque[Exception]] = {}
        self.events: list[Object] = []  # what watch_raw yields next
        self._versions = itertools.count(1)
        self._uids = itertools.count(1)

    # ---- test controls -----------------------------------------------------------------------------------
    def fail_next(self, verb: str, times: int = 1, status: int = 500) -> None:
        """Make the next ``times`` calls of ``verb`` raise ``ApiException(status)``."""
        self.failures.setdefault(verb, deque()).extend(ApiException(status=status) for _ in range(times))

    def _call(self, verb: str) -> None:
        self.calls[verb] += 1
        pending = self.failures.get(verb)
        if pending:
            raise pending.popleft()

    def _version(self) -> str:
        return str(next(self._versions))

    # ---- the Kube interface ------------------------------------------------------------------------------
    def has_api(self, api_version: str, kind: str) -> bool:
        self._call("has_api")
        return (api_version, kind) in self.served

    def may_watch(self, api_version: str, kind: str, namespace: str = "") -> bool:
        return True

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Object | None:
        self._call("get")
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def list(self, api_version: str, kind: str, namespace: str, label_selector: str = "") -> list[Object]:
        self._call("list")
        return [
            copy.deepcopy(o)
            for (k, ns, _), o in sorted(self.objects.items())
            if k == kind and ns == namespace and _matches((o.get("metadata") or {}).get("labels") or {}, label_selector)
        ]

    def apply(self, body: Object) -> Object:
        self._call("apply")
        meta = body["metadata"]
        key = (body["kind"], meta.get("namespace") or "", meta["name"])
        live = self.objects.get(key)
        stored = copy.deepcopy(body)
        stored.pop("status", None)
        if live is None:
            stored["metadata"].update(
                uid=f"uid-{next(self._uids)}",
                creationTimestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                generation=1,
            )
        else:
            for field in _SERVER_METADATA:
                stored["metadata"][field] = live["metadata"][field]
            if "status" in live:
                stored["status"] = copy.deepcopy(live["status"])
            if stored.get("spec") != live.get("spec"):
                stored["metadata"]["generation"] = int(live["metadata"]["generation"]) + 1
        if stored != live:
            stored["metadata"]["resourceVersion"] = self._version()
            self.objects[key] = stored
            self.writes.append(("apply", body["kind"], meta["name"]))
        return copy.deepcopy(self.objects[key])

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        self._call("delete")
        if self.objects.pop((kind, namespace, name), None) is not None:
            self.writes.append(("delete", kind, name))

    def patch_status(
        self, group: str, version: str, plural: str, namespace: str, name: str, status: dict[str, Any]
    ) -> Object | None:
        self._call("patch_status")
        key = ("SamModel", namespace, name)
        live = self.objects.get(key)
        if live is None:
            return None
        stored = copy.deepcopy(live)
        stored["status"] = _merge_patch(live.get("status") or {}, status)
        if stored != live:
            stored["metadata"]["resourceVersion"] = self._version()
            self.objects[key] = stored
            self.writes.append(("patch_status", "SamModel", name))
        return copy.deepcopy(stored)

    def list_raw(
        self, api_version: str, kind: str, namespace: str = "", label_selector: str | None = None
    ) -> tuple[list[Object], str]:
        self._call("list_raw")
        items = [
            copy.deepcopy(o)
            for (k, ns, _), o in sorted(self.objects.items())
            if k == kind
            and (not namespace or ns == namespace)
            and _matches((o.get("metadata") or {}).get("labels") or {}, label_selector)
        ]
        for item in items:  # like the API server: a list's items carry no apiVersion and kind
            item.pop("apiVersion", None)
            item.pop("kind", None)
        return items, str(max((int(o["metadata"]["resourceVersion"]) for o in self.objects.values()), default=0))

    def watch_raw(self, *args: Any) -> Iterator[Object]:
        self._call("watch_raw")
        while self.events:
            yield self.events.pop(0)
        time.sleep(0.01)


class CountingKube:
    """Wraps any Kube (the real one in the contract tests) and counts its calls, as ``MemoryKube`` does."""

    def __init__(self, kube: Any) -> None:
        self._kube = kube
        self.calls: Counter[str] = Counter()

    def __getattr__(self, verb: str) -> Any:
        method = getattr(self._kube, verb)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[verb] += 1
            return method(*args, **kwargs)

        return counted
