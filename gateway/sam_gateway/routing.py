"""Which replica gets an invocation: rendezvous (highest-random-weight) hashing of the image's routing key.

Pure. The same image always ranks the replicas in the same order, so a frame lands on the replica that already
holds its embedding in cache; when a replica leaves, only the images it owned move (to their second
choice), and when one joins it takes only the images for which it now scores highest.

The routing key is a digest of the ``image`` field's base64 *text*, canonicalised (a ``data:...;base64,``
prefix and whitespace dropped), not of the decoded bytes: canonical base64 text and image bytes map one to one,
so the key is as stable per image as a hash of the bytes, and different clicks on one frame (other
``pos_points``/``neg_points``/``obj_bbox``) share it. Finding the field costs a scan of the body, not a JSON
parse and a base64 decode (issue 13: that was most of the gateway's overhead on a 1080p frame). The key is not
the encoder's cache key, and nothing needs it to be: the encoder hashes the decoded bytes itself.

The digest is CRC-32 and length of that text, spread to 32 bytes by sha256: the rendezvous scores need a
well-mixed key that every gateway replica computes alike, not a collision-resistant one (two images that
collide only share a replica), and CRC-32 reads a megabyte about four times faster than sha256 here.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Sequence

_IMAGE_KEY = b'"image"'
_JSON_WHITESPACE = b" \t\r\n"
_DATA_URL = re.compile(rb"data:[^,\"\\]{0,200};base64,")  # the prefix the encoder tolerates (sam_contract.encoding)
_DATA_URL_TEXT = re.compile(r"^data:[^,]{0,200};base64,")


def image_digest(body: bytes) -> bytes:
    """The 32-byte routing key of a CVAT invocation body (see the module docstring); never raises.

    A body whose ``image`` value is a plain JSON string (no escapes, no spaces: what CVAT sends) is keyed from a
    scan; any other body is parsed as JSON. Falls back to the sha256 of the whole body when there is no
    non-empty string ``image`` at the top level (the encoder answers such requests with a 4xx; the fallback
    just keeps routing deterministic).
    """
    span = _scan_image(body)
    if span is not None:
        start, end = span
        return _digest(memoryview(body)[start:end])
    text = _parsed_image(body)
    if text:
        return _digest(text.encode("utf-8", "surrogatepass"))
    return _digest(body)


def _digest(data: bytes | memoryview) -> bytes:
    return hashlib.sha256(b"%d:%d" % (len(data), zlib.crc32(data))).digest()


def rank_replicas(digest: bytes, replicas: Sequence[str]) -> list[str]:
    """Replicas ordered by rendezvous score for ``digest``: primary first, then the fallbacks in order."""
    return sorted(set(replicas), key=lambda replica: (_score(digest, replica), replica), reverse=True)


def _score(digest: bytes, replica: str) -> int:
    weight = hashlib.blake2b(digest + b"\x00" + replica.encode(), digest_size=8).digest()
    return int.from_bytes(weight, "big")


def _skip_whitespace(body: bytes, index: int) -> int:
    while index < len(body) and body[index] in _JSON_WHITESPACE:
        index += 1
    return index


def _scan_image(body: bytes) -> tuple[int, int] | None:
    """``(start, end)`` of the canonical base64 text of a top-level ``"image": "..."`` member, found by a scan.

    ``None`` when the scan cannot be sure (no such member, the key not first in the object or after a comma,
    an escape or a space inside the value): the caller parses the body instead, which gives the same key.
    """
    key = body.find(_IMAGE_KEY)
    if key < 0:
        return None
    before = key - 1
    while before >= 0 and body[before] in _JSON_WHITESPACE:
        before -= 1
    if before < 0 or body[before] not in b"{,":
        return None
    colon = _skip_whitespace(body, key + len(_IMAGE_KEY))
    if body[colon : colon + 1] != b":":
        return None
    quote = _skip_whitespace(body, colon + 1)
    if body[quote : quote + 1] != b'"':
        return None
    start = quote + 1
    end = body.find(b'"', start)
    if end < 0 or body.find(b"\\", start, end) >= 0 or body.find(b" ", start, end) >= 0:
        return None  # unterminated, escaped (\n, \/, \uXXXX) or spaced: the parse canonicalises those
    if body.find(_IMAGE_KEY, end) >= 0:
        return None  # a second "image" key (JSON keeps the last one) or one inside a nested object: parse
    prefix = _DATA_URL.match(body, start, end)
    if prefix is not None:
        start = prefix.end()
    return (start, end) if start < end else None


def _parsed_image(body: bytes) -> str | None:
    """The canonical base64 text of the ``image`` field by a JSON parse, or ``None``."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: JSON nested thousands deep
        return None
    if not isinstance(payload, dict):
        return None
    image = payload.get("image")
    if not isinstance(image, str):
        return None
    return "".join(_DATA_URL_TEXT.sub("", image, count=1).split())
