"""CVAT direct-mode ports (``status.cvat.httpPort``): the one allocation rule, and who holds which port.

:func:`choose_http_port` is the whole policy, pure: a SamModel keeps the port it has while that port is in range
and no senior SamModel claims it; otherwise it gets the first free port probing up from a hash of its key, so the
same SamModel gets the same port as long as nobody took it first. ``reconcile`` gathers its inputs: the port the
stored status carries, the ports others hold (from the :class:`PortBook`), and the range (settings).

:class:`PortBook` keeps who holds which port in memory, so a reconcile need not list.
Two sources: the ports the SamModels' stored statuses carry (``observe``, fed by the SamModel watch) and the ports
this process decided (``decide``, before the status write lands). A reconcile asks ``holding(key)`` for the ports
it must not use, under ``lock`` together with its decision, so that concurrent reconciles in this process never
pick the same free port. A port two SamModels both claim (two operators, an older version, a foreign write) stays
with the senior one (older, then by namespace/name); ``decide`` reports the junior claimants, which must move.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Container, Mapping
from typing import Any

from sam_operator.store import Key

__all__ = ["PortBook", "Seniority", "allocate_http_port", "choose_http_port", "seniority", "status_port"]

Seniority = tuple[str, str, str, str]


def allocate_http_port(key: str, taken: Container[int], base: int, size: int) -> int | None:
    """A stable direct-mode port for ``key`` (e.g. ``<namespace>/<name>``) in ``[base, base + size)``.

    Starts at ``base + sha256(key) % size`` and probes upward (wrapping) past ports in ``taken``, so the same key
    gets the same port as long as nobody else took it first. Returns None when the range is full.
    """
    if size <= 0:
        return None
    start = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % size
    for step in range(size):
        port = base + (start + step) % size
        if port not in taken:
            return port
    return None


def choose_http_port(
    key: str, *, enabled: bool, kept: int | None, taken: Container[int], base: int, size: int
) -> int | None:
    """The direct-mode port SamModel ``key`` gets (None: CVAT is disabled for it, or the range is full).

    ``kept`` is the port its stored status carries; ``taken``, the ports it must not use (held by others, or by a
    senior claimant of ``kept``: :meth:`PortBook.holding`); ``[base, base + size)``, the range (settings).
    """
    if not enabled:
        return None
    if kept is not None and base <= kept < base + size and kept not in taken:
        return kept
    return allocate_http_port(key, taken, base, size)


def seniority(body: Mapping[str, Any]) -> Seniority:
    """Sort key: who keeps a contested direct-mode port (the smallest key wins)."""
    meta = body.get("metadata") or {}
    return (
        str(meta.get("creationTimestamp") or "~"),
        str(meta.get("namespace", "")),
        str(meta.get("name", "")),
        str(meta.get("uid", "")),
    )


def status_port(body: Mapping[str, Any] | None) -> int | None:
    port = (((body or {}).get("status") or {}).get("cvat") or {}).get("httpPort")
    return port if isinstance(port, int) and not isinstance(port, bool) else None


class _Holding:
    """The ports SamModel ``key`` must not use (a container view over the book; valid under the book's lock)."""

    def __init__(self, book: PortBook, key: Key, mine: Seniority, kept: int | None) -> None:
        self._book, self._key, self._mine, self._kept = book, key, mine, kept

    def __contains__(self, port: object) -> bool:
        others = [k for k in self._book._holders.get(port, ()) if k != self._key] if isinstance(port, int) else []
        if port == self._kept:  # we keep it unless a senior SamModel claims it too
            return any(self._book._seniority.get(k, ("",) * 4) < self._mine for k in others)
        return bool(others)


class PortBook:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._observed: dict[Key, int] = {}
        self._decided: dict[Key, int] = {}
        self._seniority: dict[Key, Seniority] = {}
        self._holders: dict[int, set[Key]] = {}

    def _claims(self, key: Key) -> set[int]:
        return {p for p in (self._observed.get(key), self._decided.get(key)) if p is not None}

    def _set(self, table: dict[Key, int], key: Key, port: int | None) -> None:
        before = self._claims(key)
        if port is None:
            table.pop(key, None)
        else:
            table[key] = port
        after = self._claims(key)
        for p in before - after:
            holders = self._holders.get(p)
            if holders is not None:
                holders.discard(key)
                if not holders:
                    del self._holders[p]
        for p in after - before:
            self._holders.setdefault(p, set()).add(key)

    def observe(self, key: Key, body: Mapping[str, Any]) -> None:
        """A stored SamModel (from the watch or a write response): the port its status carries."""
        with self.lock:
            self._seniority[key] = seniority(body)
            self._set(self._observed, key, status_port(body))

    def holding(self, key: Key, body: Mapping[str, Any]) -> _Holding:
        """Ports ``key`` must not take; call and ``decide`` under ``lock``."""
        self._seniority[key] = seniority(body)
        return _Holding(self, key, seniority(body), status_port(body))

    def decide(self, key: Key, port: int | None) -> list[Key]:
        """Record the port ``key`` will have; return the junior SamModels that claim it too (they must move)."""
        with self.lock:
            self._set(self._decided, key, port)
            if port is None:
                return []
            mine = self._seniority.get(key, ("~",) * 4)
            return sorted(
                k for k in self._holders.get(port, ()) if k != key and self._seniority.get(k, ("~",) * 4) > mine
            )

    def forget(self, key: Key) -> None:
        with self.lock:
            self._set(self._observed, key, None)
            self._set(self._decided, key, None)
            self._seniority.pop(key, None)

    def holders(self, port: int) -> set[Key]:
        with self.lock:
            return set(self._holders.get(port, ()))
