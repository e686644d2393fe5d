"""The log line format of the operator and the gateway: plain text locally, one JSON object per line in a cluster.

Fields passed as ``extra=`` become JSON keys (or ``key=value`` suffixes in plain text).
"""

from __future__ import annotations

import json
import logging
from typing import Any

__all__ = ["JsonFormatter", "PlainFormatter", "configure_logging"]

_STANDARD_RECORD_KEYS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_RECORD_KEYS and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "msg", **extra, "exc"?}``, one object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_extra(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class PlainFormatter(logging.Formatter):
    """``time level logger: message key=value ...``."""

    def __init__(self) -> None:
        super().__init__(_PLAIN_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = _extra(record)
        return line + "".join(f" {k}={v}" for k, v in extra.items()) if extra else line


def configure_logging(*, json_lines: bool, level: str) -> None:
    """Send every log record to stderr in one of the two formats, at ``level`` and above."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_lines else PlainFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
