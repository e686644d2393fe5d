"""Decides whether a live object already carries every field we want (pure; used to skip no-op writes).

The API server adds defaults (``protocol: TCP``, ``terminationMessagePath`` ...) and normalises scalars
(``nvidia.com/gpu: 1`` reads back as ``"1"``), so "desired is contained in live" is the right test, not equality.
"""

from __future__ import annotations

from typing import Any

# Fields that describe an object rather than what we asked of it.
_IGNORED_TOP_LEVEL = {"status"}
_IGNORED_METADATA = {"resourceVersion", "uid", "generation", "creationTimestamp", "managedFields"}


def _scalar_equal(want: Any, have: Any) -> bool:
    if isinstance(want, bool) or isinstance(have, bool):
        return type(want) is type(have) and want == have
    if want == have:
        return True
    if isinstance(want, (int, float)) and isinstance(have, str):
        return str(want) == have
    if isinstance(want, str) and isinstance(have, (int, float)):
        return want == str(have)
    return False


def contains(want: Any, have: Any) -> bool:
    """True when every field in ``want`` is present in ``have`` with the same value (lists: same length, in order)."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return False
        return all(k in have and contains(v, have[k]) for k, v in want.items() if v is not None)
    if isinstance(want, list):
        if not isinstance(have, list) or len(want) != len(have):
            return False
        return all(contains(w, h) for w, h in zip(want, have, strict=True))
    return _scalar_equal(want, have)


def needs_apply(desired: dict[str, Any], live: dict[str, Any] | None) -> bool:
    """Whether applying ``desired`` would change ``live`` (None: the object does not exist yet)."""
    if live is None:
        return True
    for key, value in desired.items():
        if key in _IGNORED_TOP_LEVEL:
            continue
        if key == "metadata":
            meta = {k: v for k, v in value.items() if k not in _IGNORED_METADATA}
            if not contains(meta, live.get("metadata", {})):
                return True
        elif not contains(value, live.get(key)):
            return True
    return False
