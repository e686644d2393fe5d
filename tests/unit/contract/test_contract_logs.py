"""sam_contract.logs: the one log format of the operator and the gateway."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from sam_contract.logs import JsonFormatter, PlainFormatter, configure_logging


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("sam.test", logging.WARNING, __file__, 1, "Failed to %s", ("watch",), None)
    record.__dict__.update(extra)
    return record


def test_json_lines_carry_the_message_level_logger_and_extra_fields() -> None:
    entry = json.loads(JsonFormatter().format(_record(resource="pods", retry_in_s=0.5, _private=1)))
    assert {k: entry[k] for k in ("level", "logger", "msg", "resource", "retry_in_s")} == {
        "level": "WARNING",
        "logger": "sam.test",
        "msg": "Failed to watch",
        "resource": "pods",
        "retry_in_s": 0.5,
    }
    assert entry["time"] and "_private" not in entry and "exc" not in entry


def test_an_exception_is_one_json_field() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record()
        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in entry["exc"]


def test_plain_lines_append_extra_fields_as_key_value() -> None:
    line = PlainFormatter().format(_record(resource="pods"))
    assert line.endswith("WARNING sam.test: Failed to watch resource=pods")


@pytest.mark.parametrize("json_lines", [True, False])
def test_configure_logging_installs_one_handler_at_the_level(json_lines: bool) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging(json_lines=json_lines, level="debug")
        assert root.level == logging.DEBUG and len(root.handlers) == 1
        expected = JsonFormatter if json_lines else PlainFormatter
        assert isinstance(root.handlers[0].formatter, expected)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
