"""One call of a SIP worker (a leg): what the worker and dial-out both keep about it.

Its own module so that :mod:`bridge.sip.worker` and :mod:`bridge.sip.dialout` share it
without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bridge.sip.sipmsg import CallerInfo


@dataclass(slots=True)
class Leg:
    """A call the worker serves; ``extra`` carries per-feature data (dial-out request)."""

    leg_id: str
    room: str
    call: Any
    caller: CallerInfo
    created: float
    port: Any = None  # pjw.FramePort
    attached: bool = False
    answered: bool = False
    confirmed: bool = False
    ended: bool = False
    hangup_reason: str = ""
    last_rx: int = -1
    last_rx_change: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


__all__ = ["Leg"]
