"""Names of everything the operator creates for a SamModel.

Owns the one rule for child names (``sam-<name>``), the model-cache PVC name, label-safe values and derived CVAT
function names. Every name is a DNS-1123 label (at most 63 characters, lowercase alphanumerics and ``-``); when
the natural name does not fit, or had to be altered, it is truncated and a short hash of the original input is
appended so that distinct inputs never collide. Called by ``render``, ``status``, ``cvat`` and ``reconcile``.
"""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "DNS1123_LABEL_MAX",
    "child_name",
    "dns1123_label",
    "instance_label_value",
    "is_dns1123_label",
    "pvc_name",
]

DNS1123_LABEL_MAX = 63
_HASH_LEN = 8
_DNS1123_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_CHILD_PREFIX = "sam-"
_PVC_SUFFIX = "-model-cache"


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LEN]


def is_dns1123_label(value: str) -> bool:
    """Whether ``value`` is a valid DNS-1123 label (what Services, and so all our children, need)."""
    return len(value) <= DNS1123_LABEL_MAX and bool(_DNS1123_LABEL_RE.match(value))


def dns1123_label(prefix: str, middle: str, suffix: str = "", *, max_len: int = DNS1123_LABEL_MAX) -> str:
    """Join ``prefix + middle + suffix`` into a DNS-1123 label.

    ``prefix`` and ``suffix`` are kept verbatim (they must already be label-safe). ``middle`` is lowercased and
    characters outside ``[a-z0-9-]`` become ``-``. If that changed ``middle`` or the result is too long, the middle
    part is truncated and ``-<8 hex of sha256(middle)>`` is appended before the suffix.
    """
    cleaned = re.sub(r"[^a-z0-9-]", "-", middle.lower())
    candidate = f"{prefix}{cleaned}{suffix}"
    if cleaned == middle and is_dns1123_label(candidate) and len(candidate) <= max_len:
        return candidate
    digest = _short_hash(middle)
    room = max_len - len(prefix) - len(suffix) - _HASH_LEN - 1
    head = cleaned[: max(room, 0)].strip("-")
    parts = f"{head}-{digest}" if head else digest
    return f"{prefix}{parts}{suffix}"


def child_name(cr_name: str) -> str:
    """Name of every child object of SamModel ``cr_name``: ``sam-<name>`` (hash-suffixed past 63 characters)."""
    return dns1123_label(_CHILD_PREFIX, cr_name)


def pvc_name(cr_name: str) -> str:
    """Name of the shared model-cache PVC: ``sam-<name>-model-cache`` (hash-suffixed past 63 characters)."""
    return dns1123_label(_CHILD_PREFIX, cr_name, _PVC_SUFFIX)


def instance_label_value(cr_name: str) -> str:
    """Value of ``app.kubernetes.io/instance``: the SamModel name (the CRD caps it at 63 characters).

    Kept total for names the CRD would reject (e.g. on a cluster with an older CRD): truncated with a hash.
    """
    if len(cr_name) <= DNS1123_LABEL_MAX and _LABEL_VALUE_RE.match(cr_name):
        return cr_name
    return dns1123_label("", cr_name)
