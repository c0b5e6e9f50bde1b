"""One worker process carries many calls: our PJSIP build's PJSUA_MAX_CALLS is 256 (the
PyPI wheel stopped at 4, so this needed 9 processes before)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from bridge.core.events import LegJoined, LegLeft, TalkingChanged
from bridge.sip import devpeers as dp
from tests.sip.conftest import PoolHarness, Speech

CALLERS = 32


def test_thirty_two_sipp_callers_in_one_worker_are_all_heard(
    make_pool: Callable[..., PoolHarness], speech: Speech, tmp_path: Path
) -> None:
    h = make_pool(pool_size=1, calls_per_worker=CALLERS + 1)
    silence = tmp_path / "silence.wav"
    dp.write_wav(silence, np.zeros(8000 * 40, np.int16), 8000)
    bs = dp.Baresip(tmp_path / "baresip", silence)
    bs.start(f"sip:demo@127.0.0.1:{h.port}", 40)
    try:
        jb = h.wait_for(lambda e: isinstance(e, LegJoined), label="listener joined")
        assert isinstance(jb, LegJoined)
        scenario = dp.sipp_uac_scenario("demo", pcap=speech.a_pcap, hold_ms=12000)
        sipp = dp.Sipp(scenario, h.port, tmp_path / "sipp", calls=CALLERS, rate=16,
                       limit=CALLERS)  # fmt: skip
        sipp.start()
        h.until(
            lambda: sum(isinstance(e, LegJoined) for _, e in h.seen) >= CALLERS + 1,
            timeout=40, label=f"{CALLERS + 1} legs joined",
        )  # fmt: skip
        at_peak = h.pool.legs()
        result = sipp.wait()
        assert result.returncode == 0, result.stdout + result.errors
        h.until(lambda: sum(isinstance(e, LegLeft) for _, e in h.seen) >= CALLERS, timeout=30)
        bs.stop()
    finally:
        bs.stop()
    joined = [e for _, e in h.seen if isinstance(e, LegJoined)]
    callers = [e for e in joined if e.leg_id != jb.leg_id]
    assert len(callers) == CALLERS
    assert len(at_peak) == CALLERS + 1  # all at once
    assert {e.worker for e in joined} == {0}  # one process
    assert h.pool.worker_pids() and all(s.alive for s in h.pool.slots())
    talked = {e.leg_id for _, e in h.seen if isinstance(e, TalkingChanged) and e.talking}
    assert {e.leg_id for e in callers} <= talked  # every caller's audio reached the mix
    left = [e for _, e in h.seen if isinstance(e, LegLeft)]
    assert all(e.reason == "bye" for e in left), {e.reason for e in left}
    heard, rate = bs.heard()
    loud = dp.envelope(heard, rate) > 300
    assert loud.sum() * 0.02 > 0.6 * len(speech.a) / 8000, f"heard {loud.sum()} loud frames"
