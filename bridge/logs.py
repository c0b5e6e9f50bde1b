"""Structured logging: JSON lines for operators, a readable console for people at a terminal.

Context (room, call_id, participant) is bound with :func:`bound` and rides along on every
event logged inside it, including from the stdlib ``logging`` of our dependencies.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import structlog

from bridge.config import LogFormat, LogSettings

_SECRET_WORDS = ("secret", "password", "passwd", "token", "authorization")
REDACTED = "**********"


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Last line of defence: never print a value whose key says it is a secret."""
    for key in list(event_dict):
        if any(word in key.lower() for word in _SECRET_WORDS):
            event_dict[key] = REDACTED
    return event_dict


def _json_wanted(fmt: LogFormat) -> bool:
    if fmt is LogFormat.AUTO:
        return not sys.stderr.isatty()
    return fmt is LogFormat.JSON


def configure(settings: LogSettings) -> None:
    """Route structlog and stdlib logging through one renderer on stderr."""
    level = getattr(logging, settings.level.value.upper())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    renderer: structlog.types.Processor
    if _json_wanted(settings.format):
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # slixmpp logs every stanza at DEBUG; keep it at WARNING unless we debug ourselves.
    logging.getLogger("slixmpp").setLevel(max(level, logging.WARNING))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


@contextmanager
def bound(**context: Any) -> Iterator[None]:
    """Bind room / call_id / participant (or any key) for the events logged inside."""
    with structlog.contextvars.bound_contextvars(**context):
        yield
