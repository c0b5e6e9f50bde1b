"""PJSIP's own log lines as structured events (pure: no pjsua2 import).

pjsua2 hands every line to our ``LogWriter`` (bridge.sip.pj.StructlogWriter) decorated with
only the sender and a space (``PJ_LOG_HAS_SENDER | PJ_LOG_HAS_SPACE``): the sender, right-aligned
in 22 columns and cut to 22 characters, then the message, which may span lines (a SIP
message dump). Time, thread and level come from structlog, so every line of a production log
is one JSON object (event ``sip.pjsip``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

EVENT = "sip.pjsip"

#: pjlib levels: 0 fatal, 1 error, 2 warning, 3 info, 4 debug, 5 trace, 6 detailed trace
_LEVELS = (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO)


@dataclass(frozen=True, slots=True)
class PjLogLine:
    level: int  # the stdlib logging level
    pj_level: int
    sender: str  # a source file ("sip_endpoint.c") or an object name ("tsx0x55d2…")
    text: str


#: ``PJ_LOG_SENDER_WIDTH`` of pjlib on 64-bit machines
SENDER_WIDTH = 22


def parse(pj_level: int, line: str) -> PjLogLine:
    """One pjlib log line (``PJ_LOG_HAS_SENDER | PJ_LOG_HAS_SPACE`` decor) as fields."""
    line = line.rstrip("\r\n")
    if len(line) > SENDER_WIDTH and line[SENDER_WIDTH] == " ":
        sender, text = line[:SENDER_WIDTH].strip(" "), line[SENDER_WIDTH + 1 :]
    else:  # another width: senders never contain a space
        sender, _, text = line.lstrip(" ").partition(" ")
    level = _LEVELS[pj_level] if 0 <= pj_level < len(_LEVELS) else logging.DEBUG
    return PjLogLine(level, pj_level, sender, text.strip(" "))
