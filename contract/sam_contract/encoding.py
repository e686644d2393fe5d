"""The one base64 rule for CVAT's ``image`` field: the encoder's.

Standard alphabet, padding required; a ``data:<mime>;base64,`` prefix and whitespace are tolerated. A string the
encoder would reject (400) is rejected here as well. (The gateway routes by the field's text without decoding it;
tests/unit/gateway/test_gateway_status_contract.py checks that it keys every form of one image this rule accepts
alike.)
"""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["InvalidBase64Error", "decode_base64"]

_DATA_URL = re.compile(r"^data:[\w/+.-]+;base64,")
_WHITESPACE = re.compile(r"\s+")


class InvalidBase64Error(ValueError):
    """The text is not standard base64, or decodes to nothing; ``str()`` says which."""


def decode_base64(text: str) -> bytes:
    """Decode ``text`` by the rule above, or raise :class:`InvalidBase64Error`."""
    text = _DATA_URL.sub("", text, count=1)
    if any(c.isspace() for c in text[:1] + text[-1:]) or "\n" in text:
        text = _WHITESPACE.sub("", text)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidBase64Error(f"invalid base64 ({exc})") from exc
    if not data:
        raise InvalidBase64Error("empty")
    return data
