"""Which replica gets an invocation: rendezvous (highest-random-weight) hashing of the image's content digest.

Pure. The same image always ranks the replicas in the same order, so a frame lands on the replica that already
holds its embedding in cache; when a replica leaves, only the images it owned move (to their second
choice), and when one joins it takes only the images for which it now scores highest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from sam_contract.encoding import InvalidBase64Error, decode_base64


def image_digest(body: bytes) -> bytes:
    """sha256 of the base64-decoded ``image`` field of a CVAT invocation body.

    ``image`` is decoded by the encoder's own rule (:func:`sam_contract.encoding.decode_base64`). Falls back to
    the sha256 of the whole body when it is not a JSON object with a decodable string ``image`` (the encoder
    answers such requests with a 4xx; the fallback just keeps routing deterministic).
    """
    image = _image_field(body)
    if image is not None:
        try:
            return hashlib.sha256(decode_base64(image)).digest()
        except InvalidBase64Error:
            pass
    return hashlib.sha256(body).digest()


def rank_replicas(digest: bytes, replicas: Sequence[str]) -> list[str]:
    """Replicas ordered by rendezvous score for ``digest``: primary first, then the fallbacks in order."""
    return sorted(set(replicas), key=lambda replica: (_score(digest, replica), replica), reverse=True)


def _score(digest: bytes, replica: str) -> int:
    weight = hashlib.blake2b(digest + b"\x00" + replica.encode(), digest_size=8).digest()
    return int.from_bytes(weight, "big")


def _image_field(body: bytes) -> str | None:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: JSON nested thousands deep
        return None
    if not isinstance(payload, dict):
        return None
    image = payload.get("image")
    return image if isinstance(image, str) and image else None
