"""Logging: JSON lines with bound context; secrets masked even if logged by mistake."""

from __future__ import annotations

import json
import logging

import pytest

from bridge.config import LogFormat, LogLevel, LogSettings
from bridge.logs import bound, configure, get_logger


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_events_carry_bound_context(capsys: pytest.CaptureFixture[str]) -> None:
    configure(LogSettings(format=LogFormat.JSON, level=LogLevel.INFO))
    log = get_logger("test")
    with bound(room="room1", call_id="abc@host"):
        log.info("leg.joined", participant="p1")
    log.info("outside")
    events = _json_lines(capsys.readouterr().err)
    assert events[0]["event"] == "leg.joined"
    assert events[0]["room"] == "room1"
    assert events[0]["call_id"] == "abc@host"
    assert events[0]["participant"] == "p1"
    assert events[0]["level"] == "info"
    assert "timestamp" in events[0]
    assert "room" not in events[1]


def test_secrets_are_masked(capsys: pytest.CaptureFixture[str]) -> None:
    configure(LogSettings(format=LogFormat.JSON))
    get_logger("test").warning("oops", component_secret="hunter2", redis_password="pw")
    text = capsys.readouterr().err
    assert "hunter2" not in text
    assert '"pw"' not in text


def test_stdlib_logging_goes_through_the_same_renderer(capsys: pytest.CaptureFixture[str]) -> None:
    configure(LogSettings(format=LogFormat.JSON, level=LogLevel.DEBUG))
    with bound(room="r2"):
        logging.getLogger("somelib").warning("value %d", 42)
    (event,) = _json_lines(capsys.readouterr().err)
    assert event["event"] == "value 42"
    assert event["room"] == "r2"


def test_level_filters(capsys: pytest.CaptureFixture[str]) -> None:
    configure(LogSettings(format=LogFormat.JSON, level=LogLevel.WARNING))
    get_logger("t").info("hidden")
    get_logger("t").error("shown")
    assert [e["event"] for e in _json_lines(capsys.readouterr().err)] == ["shown"]
