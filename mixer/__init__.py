"""Audio mixer of the SIP ⇄ XMPP-MUC bridge: pure numpy, no SIP or XMPP imports.

* :class:`~mixer.engine.Mixer` — vectorised mix-minus for all conferences of a node, per-leg
  gain/mute, int16 saturation, 8/16/48 kHz legs, talker and dominant-speaker events.
* :class:`~mixer.node.MixerNode` — the mixer plus its shared-memory rings and 20 ms clock;
  the supervisor's handle (``add_leg`` returns a :class:`~mixer.rings.LegAttachment`).
* :class:`~mixer.rings.LegPort` — what a SIP worker process opens for one call.

See docs/mixer.md for the design, the numbers and the integration recipe.
"""

from mixer.clock import ClockStats, TickClock
from mixer.engine import DominantSpeakerEvent, FrameTable, Mixer, MixerEvent, TalkerEvent
from mixer.node import MixerNode
from mixer.rings import LegAttachment, LegPort, RingCounters, StaleAttachmentError
from mixer.talker import TalkerConfig

__all__ = [
    "ClockStats",
    "DominantSpeakerEvent",
    "FrameTable",
    "LegAttachment",
    "LegPort",
    "Mixer",
    "MixerEvent",
    "MixerNode",
    "RingCounters",
    "StaleAttachmentError",
    "TalkerConfig",
    "TalkerEvent",
    "TickClock",
]
