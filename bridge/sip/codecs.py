"""Which codecs a worker offers, in which order, and at what rate a leg's audio reaches the mixer.

Pure: no pjsua2 import. A wideband worker's pjmedia conference bridge runs at 48 kHz
(:data:`BRIDGE_RATE`), a narrowband worker's at 8 kHz (:data:`NARROWBAND_RATE`,
``workers.narrowband_workers``); each leg's port to the mixer runs at its codec's own audio
rate (opus 48 kHz, G.722 16 kHz, G.711 8 kHz) capped by the worker's bridge rate, so a
narrowband room stays cheap in the mixer, an opus caller on a wideband worker keeps its full
band, and a G.711 leg on a narrowband worker is never resampled by pjmedia. The rate is
chosen when the INVITE arrives, before the answer is sent, from the SDP offer: as the
answerer pjmedia picks the first codec of *our* list that the offer contains
(``PJMEDIA_SDP_NEG_PREFER_REMOTE_CODEC_ORDER 0`` in
pjsip/config_site.h), which :func:`answer_codec` reproduces. If the guess is ever wrong (a
re-INVITE changes the codec), pjmedia resamples between the port and the stream: the audio
stays right, only the bandwidth or some CPU is lost.
"""

from __future__ import annotations

from dataclasses import dataclass

BRIDGE_RATE = 48000  # a wideband worker's conference bridge
NARROWBAND_RATE = 8000  # a narrowband worker's: G.711 legs pass without resampling


@dataclass(frozen=True, slots=True)
class Codec:
    name: str  # as in SDP rtpmap, case-insensitive
    rtp_clock: int  # the rtpmap clock rate (G.722 says 8000: RFC 3551 §4.5.2)
    audio_rate: int  # samples per second of its audio (pjmedia's port rate)
    static_pt: int | None  # RFC 3551 static payload type, if any
    priority: int  # pjsua codec priority (higher first; 0 = disabled)

    @property
    def pjsua_id(self) -> str:
        """Prefix of pjsua's codec id (``opus/48000/2``, ``G722/16000/1``, …)."""
        return f"{self.name}/{self.audio_rate}"


#: Best first. Everything else pjsua knows is disabled (priority 0).
CODECS: tuple[Codec, ...] = (
    Codec("opus", 48000, 48000, None, 250),
    Codec("G722", 8000, 16000, 9, 240),
    Codec("PCMU", 8000, 8000, 0, 230),
    Codec("PCMA", 8000, 8000, 8, 220),
)
CODEC_PRIORITIES: tuple[tuple[str, int], ...] = tuple((c.pjsua_id, c.priority) for c in CODECS)


def offered_codecs(sdp: str) -> list[str]:
    """Codec names of the first ``m=audio`` stream, in the offer's order (upper case)."""
    payloads: list[str] = []
    names: dict[str, str] = {}
    in_audio = False
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            if in_audio:
                break  # only the first audio stream
            parts = line[2:].split()
            in_audio = bool(parts) and parts[0].lower() == "audio"
            payloads = parts[3:] if in_audio else []
        elif in_audio and line.lower().startswith("a=rtpmap:"):
            pt, _, rest = line[len("a=rtpmap:") :].partition(" ")
            names[pt.strip()] = rest.split("/", 1)[0].strip().upper()
    static = {str(c.static_pt): c.name.upper() for c in CODECS if c.static_pt is not None}
    return [names.get(pt) or static.get(pt, "") for pt in payloads if names.get(pt) or pt in static]


def answer_codec(sdp: str) -> Codec | None:
    """The codec our answer will use for this offer (None: nothing we support)."""
    offered = set(offered_codecs(sdp))
    for codec in CODECS:
        if codec.name.upper() in offered:
            return codec
    return None


def codec_rate(sdp: str) -> int:
    """Audio rate of the codec we will answer with; :data:`BRIDGE_RATE` when there is no
    offer (late offer, dial-out: we offer, opus first) or no supported codec in it."""
    codec = answer_codec(sdp) if sdp.strip() else None
    return codec.audio_rate if codec is not None else BRIDGE_RATE


def leg_rate(sdp: str, bridge_rate: int = BRIDGE_RATE) -> int:
    """Audio rate of the leg's port to the mixer on a worker whose bridge runs at
    ``bridge_rate``: the codec's rate, never above the bridge's (a port above it would only
    carry pjmedia's upsampled narrowband audio, at more cost in pjmedia and the mixer)."""
    return min(codec_rate(sdp), bridge_rate)


def pjsua_priority(codec_id: str) -> int:
    """Priority for a pjsua codec id (``opus/48000/2``); 0 disables it."""
    base = "/".join(codec_id.split("/")[:2]).lower()
    for codec in CODECS:
        if codec.pjsua_id.lower() == base:
            return codec.priority
    return 0
