"""Real peers with real speech: baresip records what it hears, SIPp plays espeak-ng RTP.

Audio checks are correlations/energies with generous margins, never timings.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bridge.core.caller_gate import CallerPolicy
from bridge.core.caller_identity import TrustedPeers
from bridge.core.events import DtmfReceived, LegJoined, LegLeft, MuteLeg, TalkingChanged
from bridge.devstack.ports import free_port
from bridge.sip import devpeers as dp
from tests.sip.conftest import PoolHarness, Speech


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if len(x) else 0.0


def test_caller_hears_the_other_not_itself_and_muted_leg_is_silent(
    make_pool: Callable[..., PoolHarness], speech: Speech, tmp_path: Path
) -> None:
    h = make_pool(pool_size=2, calls_per_worker=2)
    # baresip says its sentence first, then listens in silence for the rest of the call
    src = np.concatenate([speech.b, np.zeros(8000 * 40, np.int16)])
    src_wav = tmp_path / "b.wav"
    dp.write_wav(src_wav, src, 8000)
    bs = dp.Baresip(tmp_path / "baresip", src_wav)
    bs.start(f"sip:demo@127.0.0.1:{h.port}", 30)
    try:
        jb = h.wait_for(lambda e: isinstance(e, LegJoined), label="baresip joined")
        t_b = time.monotonic()
        assert isinstance(jb, LegJoined)
        h.drain(len(speech.b) / 8000 + 1.5)  # baresip speaks alone: nobody else to hear
        # caller A talks (unmuted), then caller C plays the same speech while muted
        scenario = dp.sipp_uac_scenario("demo", pcap=speech.a_pcap, hold_ms=7000)
        sa = dp.Sipp(scenario, h.port, tmp_path / "sipp-a")
        sa.start()
        ja = h.wait_for(lambda e: isinstance(e, LegJoined), label="A joined")
        assert isinstance(ja, LegJoined)
        t_a = time.monotonic()
        h.wait_for(lambda e: isinstance(e, LegLeft) and e.leg_id == ja.leg_id, label="A left")
        t_a_left = time.monotonic()
        ra = sa.wait()
        assert ra.returncode == 0, ra.errors
        sc = dp.Sipp(scenario, h.port, tmp_path / "sipp-c")
        sc.start()
        jc = h.wait_for(lambda e: isinstance(e, LegJoined) and e.leg_id not in
                        (jb.leg_id, ja.leg_id), label="C joined")  # fmt: skip
        assert isinstance(jc, LegJoined)
        h.pool.send(MuteLeg(jc.leg_id, True))
        t_c = time.monotonic()
        rc = sc.wait()
        assert rc.returncode == 0, rc.errors
        t_c_left = time.monotonic()
        h.drain(0.5)
        bs.stop()
    finally:
        bs.stop()
    heard, rate = bs.heard()
    assert rate == 8000
    ref = dp.envelope(speech.a, 8000)
    env = dp.envelope(heard, 8000)
    corr, lag = dp.best_correlation(env, ref)
    assert corr > 0.6, f"baresip did not hear caller A (corr {corr:.2f})"

    def window(t0: float, t1: float) -> np.ndarray:
        a, b = int((t0 - t_b) * rate), int((t1 - t_b) * rate)
        return heard[max(0, a) : max(0, b)]

    a_level = _rms(heard[lag * 160 : lag * 160 + len(speech.a)])
    own_level = _rms(window(t_b + 0.5, t_b + len(speech.b) / 8000))  # while B spoke
    muted_level = _rms(window(t_c + 0.5, t_c_left - 0.5))
    assert a_level > 500
    assert own_level < 0.1 * a_level, (own_level, a_level)  # B never hears itself
    assert muted_level < 0.1 * a_level, (muted_level, a_level)  # muted C is silent
    assert t_a < t_a_left


def test_twelve_callers_across_workers_reach_one_room_and_are_heard(
    make_pool: Callable[..., PoolHarness], speech: Speech, tmp_path: Path
) -> None:
    """12 SIPp callers (3× the wheel's 4 calls per process) + one listening baresip."""
    h = make_pool(pool_size=4, calls_per_worker=4)  # front 3 + 3 × 4 = 15 slots
    silence = tmp_path / "silence.wav"
    dp.write_wav(silence, np.zeros(8000 * 40, np.int16), 8000)
    bs = dp.Baresip(tmp_path / "baresip", silence)
    bs.start(f"sip:demo@127.0.0.1:{h.port}", 40)
    try:
        jb = h.wait_for(lambda e: isinstance(e, LegJoined), label="listener joined")
        assert isinstance(jb, LegJoined)
        scenario = dp.sipp_uac_scenario("demo", pcap=speech.a_pcap, hold_ms=9000)
        sipp = dp.Sipp(scenario, h.port, tmp_path / "sipp", calls=12, rate=12, limit=12)
        sipp.start()
        h.until(
            lambda: sum(isinstance(e, LegJoined) for _, e in h.seen) >= 13,
            timeout=30, label="13 legs joined",
        )  # fmt: skip
        at_peak = h.pool.legs()
        result = sipp.wait()
        assert result.returncode == 0, result.stdout + result.errors
        h.until(lambda: sum(isinstance(e, LegLeft) for _, e in h.seen) >= 12, timeout=20)
        bs.stop()
    finally:
        bs.stop()
    joined = [e for _, e in h.seen if isinstance(e, LegJoined)]
    callers = [e for e in joined if e.leg_id != jb.leg_id]
    assert len(callers) == 12 and {e.room for e in joined} == {"demo"}
    assert len(at_peak) == 13  # all concurrently in the room
    assert len({e.worker for e in joined}) == 4  # front + 3 workers via 302
    talked = {e.leg_id for _, e in h.seen if isinstance(e, TalkingChanged) and e.talking}
    assert {e.leg_id for e in callers} <= talked  # every caller's audio reached the mix
    # 12 staggered copies of the sentence smear its envelope, so check energy: the listener
    # (on the front) hears speech from callers on the other three workers for most of it.
    heard, rate = bs.heard()
    env = dp.envelope(heard, rate)
    loud = env > 300
    assert loud.sum() * 0.02 > 0.6 * len(speech.a) / 8000, f"heard {loud.sum()} loud frames"
    assert dp.envelope(speech.a, 8000).max() < 3 * env.max()


def test_dtmf_message_and_identity_hints_from_sipp(
    make_pool: Callable[..., PoolHarness], speech: Speech, tmp_path: Path
) -> None:
    # SIPp plays the operator's PBX (127.0.0.2, a trusted peer): its PAI is read
    h = make_pool(callers=CallerPolicy(peers=TrustedPeers.parse(["127.0.0.2"])))
    dtmf_pcap = Path("/usr/share/sip-tester/dtmf_2833_1.pcap")
    scenario = dp.sipp_uac_scenario(
        "demo",
        pcap=dtmf_pcap,
        hold_ms=2500,
        dtmf_info="5",
        message="hello from sipp",
        extra_headers="P-Asserted-Identity: <sip:+15551234@pbx.example>\n"
        "Call-Info: <xmpp:alice@example.org>;purpose=impp\n"
        "XMPP-Contact: alice@example.org/phone;[call_id]",
    )
    r = dp.Sipp(scenario, h.port, tmp_path / "sipp", local_ip="127.0.0.2").run()
    assert r.returncode == 0, r.errors
    h.until(lambda: any(isinstance(e, LegLeft) for _, e in h.seen), label="left")
    joined = next(e for _, e in h.seen if isinstance(e, LegJoined))
    assert joined.asserted_identity == "sip:+15551234@pbx.example"
    assert joined.identity is not None and joined.identity.key == "sip:+15551234@pbx.example"
    assert joined.impp_uris == ("xmpp:alice@example.org",)
    assert joined.xmpp_contacts == ("alice@example.org/phone",)
    assert joined.display_name == "SIPp caller 1" and joined.codec.startswith("PCMU")
    digits = {(e.digit, e.method) for _, e in h.seen if isinstance(e, DtmfReceived)}
    assert ("5", "info") in digits
    assert ("1", "rfc4733") in digits
    from bridge.core.events import SipMessageReceived

    msg = next(e for _, e in h.seen if isinstance(e, SipMessageReceived))
    assert msg.leg_id == joined.leg_id and msg.body.strip() == "hello from sipp"
    assert (msg.subject, msg.language) == ("hello", "en")


def test_opus_caller_and_pcmu_caller_hear_each_other(
    make_pool: Callable[..., PoolHarness], speech: Speech, tmp_path: Path
) -> None:
    """A wideband leg (baresip, opus 48 kHz) and a narrowband one (SIPp, PCMU 8 kHz) in
    one room: each hears the other's speech (envelope cross-correlation)."""
    h = make_pool(pool_size=1, calls_per_worker=4)
    b48 = dp.speech("mary had a little lamb, its fleece was white as snow", 48000, tmp_path)
    lead = np.zeros(48000 * 3, np.int16)  # SIPp joins meanwhile
    src = np.concatenate([lead, b48, np.zeros(48000 * 20, np.int16)])
    src_wav = tmp_path / "b48.wav"
    dp.write_wav(src_wav, src, 48000, channels=2)  # opus/48000/2 in baresip 1.0
    bs = dp.Baresip(tmp_path / "baresip", src_wav, codecs=("opus",))
    bs.start(f"sip:demo@127.0.0.1:{h.port}", 30)
    try:
        jb = h.wait_for(lambda e: isinstance(e, LegJoined), label="baresip joined")
        assert isinstance(jb, LegJoined)
        scenario = dp.sipp_uac_scenario(
            "demo", pcap=speech.a_pcap, hold_ms=int(3000 + 1000 * len(b48) / 48000 + 1500)
        )
        sipp = dp.Sipp(scenario, h.port, tmp_path / "sipp", media_port=free_port(2))
        ears = dp.RtpTap(sipp.media_port)  # what the bridge sends to SIPp
        sipp.start()
        js = h.wait_for(
            lambda e: isinstance(e, LegJoined) and e.leg_id != jb.leg_id, label="SIPp joined"
        )
        assert isinstance(js, LegJoined)
        result = sipp.wait()
        assert result.returncode == 0, result.errors
        bs.stop()
    finally:
        bs.stop()
        ears.close()
    assert (jb.codec.lower(), jb.sample_rate) == ("opus/48000", 48000)
    assert (js.codec.upper(), js.sample_rate) == ("PCMU/8000", 8000)
    heard, rate = bs.heard()
    assert rate == 48000
    corr_a, _ = dp.best_correlation(dp.envelope(heard, rate), dp.envelope(speech.a, 8000))
    assert corr_a > 0.6, f"the opus caller did not hear the PCMU caller (corr {corr_a:.2f})"
    got = ears.audio()
    assert ears.payload_types <= {0, 13, 101}
    corr_b, _ = dp.best_correlation(dp.envelope(got, 8000), dp.envelope(b48, 48000))
    assert corr_b > 0.6, f"the PCMU caller did not hear the opus caller (corr {corr_b:.2f})"


def test_killed_mixer_process_is_restarted_and_the_call_hears_again(
    make_pool: Callable[..., PoolHarness], speech: Speech, tmp_path: Path
) -> None:
    """baresip stays in the call while the mixer process is SIGKILLed: callers before and
    after the restart are heard on the same leg, and talker events come from the new one."""
    h = make_pool(pool_size=2, calls_per_worker=2)
    silence = tmp_path / "silence.wav"
    dp.write_wav(silence, np.zeros(8000 * 60, np.int16), 8000)
    bs = dp.Baresip(tmp_path / "baresip", silence)
    bs.start(f"sip:demo@127.0.0.1:{h.port}", 45)
    scenario = dp.sipp_uac_scenario("demo", pcap=speech.a_pcap, hold_ms=7000)
    spans: list[tuple[float, float]] = []
    try:
        jb = h.wait_for(lambda e: isinstance(e, LegJoined), label="baresip joined")
        assert isinstance(jb, LegJoined)
        t0 = time.monotonic()
        for n in range(2):
            if n == 1:
                mixer = h.pool.kill_mixer()
                assert mixer.wait_ready(15), "the mixer process was not restarted"
                assert mixer.restarts == 1
            sipp = dp.Sipp(scenario, h.port, tmp_path / f"sipp-{n}")
            sipp.start()
            ja = h.wait_for(lambda e: isinstance(e, LegJoined), label=f"caller {n} joined")
            assert isinstance(ja, LegJoined)
            start = time.monotonic()
            h.wait_for(lambda e, leg=ja.leg_id: isinstance(e, TalkingChanged)  # type: ignore[misc]
                       and e.leg_id == leg and e.talking, label=f"caller {n} talks")  # fmt: skip
            h.wait_for(lambda e, leg=ja.leg_id: isinstance(e, LegLeft)  # type: ignore[misc]
                       and e.leg_id == leg, label=f"caller {n} left")  # fmt: skip
            spans.append((start - t0, time.monotonic() - t0))
            assert sipp.wait().returncode == 0
        assert not any(isinstance(e, LegLeft) and e.leg_id == jb.leg_id for _, e in h.seen)
        h.drain(0.5)
    finally:
        bs.stop()
    heard, rate = bs.heard()
    # baresip's recording starts about when it joined (t0): generous windows inside each span
    levels = [_rms(heard[int((a + 0.5) * rate) : int((b - 1.0) * rate)]) for a, b in spans]
    assert min(levels) > 300, f"speech levels heard before/after the mixer restart: {levels}"


def test_pcmu_caller_on_a_narrowband_worker_and_opus_caller_on_a_wideband_one_hear_each_other(
    make_pool: Callable[..., PoolHarness], speech: Speech, tmp_path: Path
) -> None:
    """``narrowband_workers=1``: the front (worker 0) runs its pjmedia bridge at 8 kHz.
    The opus caller dials the front and is redirected to the wideband worker 1 although
    the front has room; the PCMU caller stays on the front. Each hears the other's speech
    across the two workers (so the 8 kHz bridge's media clock and 160-sample frames work)."""
    h = make_pool(pool_size=2, calls_per_worker=4, narrowband_workers=1)
    assert [p.bridge_rate for p in h.pool.slots()] == [8000, 48000]
    b48 = dp.speech("mary had a little lamb, its fleece was white as snow", 48000, tmp_path)
    src = np.concatenate([np.zeros(48000 * 3, np.int16), b48, np.zeros(48000 * 20, np.int16)])
    src_wav = tmp_path / "b48.wav"
    dp.write_wav(src_wav, src, 48000, channels=2)  # opus/48000/2 in baresip 1.0
    bs = dp.Baresip(tmp_path / "baresip", src_wav, codecs=("opus", "g711"))
    bs.start(f"sip:demo@127.0.0.1:{h.port}", 30)
    try:
        jb = h.wait_for(lambda e: isinstance(e, LegJoined), label="baresip joined")
        assert isinstance(jb, LegJoined)
        scenario = dp.sipp_uac_scenario(
            "demo", pcap=speech.a_pcap, hold_ms=int(3000 + 1000 * len(b48) / 48000 + 1500)
        )
        sipp = dp.Sipp(scenario, h.port, tmp_path / "sipp", media_port=free_port(2))
        ears = dp.RtpTap(sipp.media_port)  # what the bridge sends to SIPp
        sipp.start()
        js = h.wait_for(
            lambda e: isinstance(e, LegJoined) and e.leg_id != jb.leg_id, label="SIPp joined"
        )
        assert isinstance(js, LegJoined)
        result = sipp.wait()
        assert result.returncode == 0, result.errors
        bs.stop()
    finally:
        bs.stop()
        ears.close()
    assert (jb.worker, jb.codec.lower(), jb.sample_rate) == (1, "opus/48000", 48000)
    assert (js.worker, js.codec.upper(), js.sample_rate) == (0, "PCMU/8000", 8000)
    heard, rate = bs.heard()
    corr_a, _ = dp.best_correlation(dp.envelope(heard, rate), dp.envelope(speech.a, 8000))
    assert corr_a > 0.6, f"the opus caller did not hear the PCMU caller (corr {corr_a:.2f})"
    got = ears.audio()
    assert ears.payload_types <= {0, 13, 101}
    corr_b, _ = dp.best_correlation(dp.envelope(got, 8000), dp.envelope(b48, 48000))
    assert corr_b > 0.6, f"the PCMU caller did not hear the opus caller (corr {corr_b:.2f})"


def test_opus_caller_spilled_onto_a_narrowband_worker_is_heard_at_8_khz(
    make_pool: Callable[..., PoolHarness], speech: Speech, tmp_path: Path
) -> None:
    """Every worker narrowband: an opus caller still gets opus on the wire, its leg runs at
    8 kHz (telephone band) and it hears and is heard by a PCMU caller."""
    h = make_pool(pool_size=1, calls_per_worker=4, narrowband_workers=1)
    b48 = dp.speech("mary had a little lamb, its fleece was white as snow", 48000, tmp_path)
    src = np.concatenate([np.zeros(48000 * 3, np.int16), b48, np.zeros(48000 * 20, np.int16)])
    src_wav = tmp_path / "b48.wav"
    dp.write_wav(src_wav, src, 48000, channels=2)
    bs = dp.Baresip(tmp_path / "baresip", src_wav, codecs=("opus",))
    bs.start(f"sip:demo@127.0.0.1:{h.port}", 30)
    try:
        jb = h.wait_for(lambda e: isinstance(e, LegJoined), label="baresip joined")
        assert isinstance(jb, LegJoined)
        scenario = dp.sipp_uac_scenario(
            "demo", pcap=speech.a_pcap, hold_ms=int(3000 + 1000 * len(b48) / 48000 + 1500)
        )
        sipp = dp.Sipp(scenario, h.port, tmp_path / "sipp", media_port=free_port(2))
        ears = dp.RtpTap(sipp.media_port)
        sipp.start()
        result = sipp.wait()
        assert result.returncode == 0, result.errors
        bs.stop()
    finally:
        bs.stop()
        ears.close()
    assert (jb.codec.lower(), jb.sample_rate) == ("opus/48000", 8000)
    heard, rate = bs.heard()
    corr_a, _ = dp.best_correlation(dp.envelope(heard, rate), dp.envelope(speech.a, 8000))
    assert corr_a > 0.6, f"the opus caller did not hear the PCMU caller (corr {corr_a:.2f})"
    corr_b, _ = dp.best_correlation(dp.envelope(ears.audio(), 8000), dp.envelope(b48, 48000))
    assert corr_b > 0.6, f"the PCMU caller did not hear the opus caller (corr {corr_b:.2f})"
