"""The operator's in-memory copy of the cluster: SamModels, their children and encoder pods, fed by watches.

The informers (:mod:`sam_operator.informer`) put what the API server sends; the reconciler reads it instead of
listing or GETting on every pass, and puts the responses of its own writes (write-through), so that the echo of
its own write (same ``resourceVersion``) is recognised and ignored. Stored bodies are never mutated: an update
replaces the whole entry. Lookups a reconcile needs are O(1) in the number of SamModels: by (kind, namespace,
name), and pods by (namespace, instance label).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from sam_contract.labels import INSTANCE_LABEL

from sam_operator.naming import instance_label_value

__all__ = ["INSTANCE_LABEL", "Key", "Store", "newer", "trim"]

Key = tuple[str, str]  # (namespace, name)
_POD_METADATA = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "labels",
    "ownerReferences",
    "deletionTimestamp",
    "creationTimestamp",
)


def trim(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """What the operator keeps of an object: no managedFields; of a pod only what its status diagnosis reads."""
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    if kind == "Pod":
        return {
            "metadata": {k: meta[k] for k in _POD_METADATA if k in meta},
            "spec": {"nodeName": (body.get("spec") or {}).get("nodeName")},
            "status": body.get("status") or {},
        }
    return {**body, "metadata": meta}


def _rv(body: Mapping[str, Any] | None) -> str:
    return str(((body or {}).get("metadata") or {}).get("resourceVersion") or "")


def newer(new: Mapping[str, Any], old: Mapping[str, Any] | None) -> bool:
    """Whether ``new`` is a later version than ``old`` of the same object (unknown order: assume it is).

    resourceVersions are opaque, but etcd revisions in practice: when both are numbers and the uid is the same,
    a lower one is an older copy (a watch event that raced the response of our own write)."""
    if old is None:
        return True
    if (new.get("metadata") or {}).get("uid") != (old.get("metadata") or {}).get("uid"):
        return True
    a, b = _rv(new), _rv(old)
    if a.isdigit() and b.isdigit():
        return int(a) > int(b)
    return a != b


class Store:
    """Thread-safe objects by kind and (namespace, name), plus the pods of each SamModel."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, dict[Key, dict[str, Any]]] = {}
        self._pods: dict[Key, dict[str, dict[str, Any]]] = {}  # (namespace, instance label) -> name -> pod
        self._instances: dict[Key, str] = {}  # (namespace, instance label value) -> SamModel name

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._objects.get(kind, {}).get((namespace, name))

    def keys(self, kind: str) -> list[Key]:
        with self._lock:
            return list(self._objects.get(kind, {}))

    def count(self, kind: str) -> int:
        with self._lock:
            return len(self._objects.get(kind, {}))

    def put(self, kind: str, body: Mapping[str, Any]) -> tuple[bool, dict[str, Any] | None]:
        """Store ``body`` unless the stored copy is newer; return (changed, previous copy)."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        kept = trim(kind, body)
        with self._lock:
            bucket = self._objects.setdefault(kind, {})
            old = bucket.get(key)
            if old is not None and (_rv(old) == _rv(kept) or not newer(kept, old)):
                return False, old
            bucket[key] = kept
            self._index(kind, key, old, kept)
            return True, old

    def delete(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            old = self._objects.get(kind, {}).pop((namespace, name), None)
            if old is not None:
                self._index(kind, (namespace, name), old, None)
            return old

    def replace(
        self, kind: str, bodies: Sequence[Mapping[str, Any]], namespace: str = ""
    ) -> list[tuple[dict[str, Any] | None, dict[str, Any] | None]]:
        """A fresh list of ``kind`` (in ``namespace``, or everywhere): store it and drop what it lacks.

        Returns (stored object, previous copy) for every change; a dropped object comes as (None, previous)."""
        changes: list[tuple[dict[str, Any] | None, dict[str, Any] | None]] = []
        seen: set[Key] = set()
        for body in bodies:
            meta = body.get("metadata") or {}
            key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
            seen.add(key)
            changed, old = self.put(kind, body)
            stored = self.get(kind, *key)
            if changed and stored is not None:
                changes.append((stored, old))
        for key in self.keys(kind):
            if key not in seen and (not namespace or key[0] == namespace):
                old = self.delete(kind, *key)
                if old is not None:
                    changes.append((None, old))
        return changes

    def pods(self, namespace: str, sammodel: str) -> list[dict[str, Any]]:
        """The encoder pods of SamModel ``sammodel`` (by their instance label)."""
        with self._lock:
            return list(self._pods.get((namespace, instance_label_value(sammodel)), {}).values())

    def owner_of_pod(self, pod: Mapping[str, Any]) -> str | None:
        """The SamModel a pod belongs to (its instance label, mapped back through the stored SamModels)."""
        meta = pod.get("metadata") or {}
        value = (meta.get("labels") or {}).get(INSTANCE_LABEL)
        if not value:
            return None
        with self._lock:
            return self._instances.get((str(meta.get("namespace") or ""), str(value)), str(value))

    def _index(self, kind: str, key: Key, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> None:
        if kind == "SamModel":
            instance = (key[0], instance_label_value(key[1]))
            if new is None:
                self._instances.pop(instance, None)
            else:
                self._instances[instance] = key[1]
        elif kind == "Pod":
            for body, add in ((old, False), (new, True)):
                if body is None:
                    continue
                value = ((body.get("metadata") or {}).get("labels") or {}).get(INSTANCE_LABEL)
                if not value:
                    continue
                group = self._pods.setdefault((key[0], str(value)), {})
                if add:
                    group[key[1]] = dict(body)
                else:
                    group.pop(key[1], None)
                    if not group:
                        self._pods.pop((key[0], str(value)), None)
