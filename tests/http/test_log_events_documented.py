"""Every log event name used in bridge/ is listed in docs/log-events.md, so operators can alert
on the list and trust it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical"}
EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")


def logged_events() -> dict[str, str]:
    """Event name → file, for every ``<logger>.<level>("area.what", …)`` call in bridge/."""
    events: dict[str, str] = {}
    for path in sorted((ROOT / "bridge").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            first = node.args[0]
            func = node.func
            method = func.attr if isinstance(func, ast.Attribute) else ""
            if (
                method in LOG_METHODS
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and EVENT_NAME.match(first.value)
            ):
                events.setdefault(first.value, str(path.relative_to(ROOT)))
    events.setdefault("readiness.changed", "bridge/http.py")  # logged through a variable
    return events


def documented_events() -> set[str]:
    text = (ROOT / "docs" / "log-events.md").read_text()
    return set(re.findall(r"^\| `([a-z0-9_.]+)` \|", text, re.MULTILINE))


def test_the_scanner_finds_events() -> None:
    events = logged_events()
    assert {"bridge.ready", "xmpp.connected", "http.listening", "node.draining"} <= set(events)


def test_every_logged_event_is_documented() -> None:
    missing = {
        name: path for name, path in logged_events().items() if name not in documented_events()
    }
    assert not missing, f"add these events to docs/log-events.md: {missing}"
