"""Codec order and the leg rate guessed from an SDP offer (pure)."""

from __future__ import annotations

from bridge.sip import codecs

BARESIP_OPUS = """v=0\r
o=- 1 2 IN IP4 127.0.0.1\r
s=-\r
c=IN IP4 127.0.0.1\r
t=0 0\r
m=audio 10000 RTP/AVP 0 8 9 96 101\r
a=rtpmap:0 PCMU/8000\r
a=rtpmap:8 PCMA/8000\r
a=rtpmap:9 G722/8000\r
a=rtpmap:96 opus/48000/2\r
a=fmtp:96 stereo=1;sprop-stereo=1\r
a=rtpmap:101 telephone-event/8000\r
"""


def test_our_order_wins_over_the_callers() -> None:
    """The offer lists PCMU first; we answer opus (config_site.h: prefer our order)."""
    assert codecs.offered_codecs(BARESIP_OPUS) == ["PCMU", "PCMA", "G722", "OPUS",
                                                   "TELEPHONE-EVENT"]  # fmt: skip
    best = codecs.answer_codec(BARESIP_OPUS)
    assert best is not None and best.name == "opus" and codecs.leg_rate(BARESIP_OPUS) == 48000


def test_static_payload_types_without_rtpmap() -> None:
    assert codecs.leg_rate("v=0\r\nm=audio 4000 RTP/AVP 0\r\n") == 8000
    assert codecs.leg_rate("v=0\r\nm=audio 4000 RTP/AVP 8 9\r\n") == 16000  # G.722: 16 kHz
    assert codecs.leg_rate("v=0\r\nm=audio 4000 RTP/SAVP 8 101\r\n") == 8000


def test_only_the_first_audio_stream_counts() -> None:
    sdp = "m=video 5000 RTP/AVP 96\r\na=rtpmap:96 opus/48000/2\r\nm=audio 4000 RTP/AVP 0\r\n"
    assert codecs.offered_codecs(sdp) == ["PCMU"]
    two = "m=audio 4000 RTP/AVP 0\r\nm=audio 4002 RTP/AVP 96\r\na=rtpmap:96 opus/48000/2\r\n"
    assert codecs.leg_rate(two) == 8000


def test_no_offer_or_nothing_we_support_uses_the_bridge_rate() -> None:
    assert codecs.leg_rate("") == codecs.BRIDGE_RATE == 48000
    gsm = "m=audio 4000 RTP/AVP 3\r\na=rtpmap:3 GSM/8000\r\n"
    assert codecs.answer_codec(gsm) is None and codecs.leg_rate(gsm) == 48000


def test_pjsua_priorities_enable_exactly_four_codecs_best_first() -> None:
    ids = ["opus/48000/2", "G722/16000/1", "PCMU/8000/1", "PCMA/8000/1", "speex/16000/1",
           "GSM/8000/1", "iLBC/8000/1", "L16/44100/1"]  # fmt: skip
    prio = {cid: codecs.pjsua_priority(cid) for cid in ids}
    enabled = sorted((p, c) for c, p in prio.items() if p)
    assert [c for _, c in reversed(enabled)] == ids[:4]
    assert all(prio[c] == 0 for c in ids[4:])


def test_pool_plans_the_first_narrowband_workers_at_8_khz() -> None:
    from bridge.sip.pool import bridge_rate

    assert [bridge_rate(i, 3, 1) for i in range(3)] == [8000, 48000, 48000]
    assert [bridge_rate(i, 2, 0) for i in range(2)] == [48000, 48000]
    assert [bridge_rate(i, 2, 5) for i in range(2)] == [8000, 8000]


def test_a_leg_port_never_runs_above_its_workers_bridge() -> None:
    """On a narrowband worker every leg's port runs at 8 kHz (opus too): pjmedia resamples
    nothing for G.711, and the mixer gets no upsampled narrowband audio at 48 kHz."""
    assert codecs.leg_rate(BARESIP_OPUS, codecs.NARROWBAND_RATE) == 8000
    assert codecs.leg_rate("v=0\r\nm=audio 4000 RTP/AVP 9\r\n", 8000) == 8000
    assert codecs.leg_rate("", codecs.NARROWBAND_RATE) == 8000  # late offer
    assert codecs.leg_rate(BARESIP_OPUS, codecs.BRIDGE_RATE) == 48000
    assert codecs.codec_rate(BARESIP_OPUS) == 48000
