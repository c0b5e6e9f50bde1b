"""How long do baresip and SIPp keep a call whose SIP worker died? (issue 22)

One worker (the front) takes a baresip call and a SIPp call; 3 s later the worker is killed
(SIGKILL, as a crash). The bridge side ends both legs at once; this measures the phones:
the time until baresip logs the call's end and until SIPp's call ends, watched for
``--window`` seconds. Run it once with ``--session-expires 0`` (PJSIP's default: no timer
unless the phone asks) and once with the default 90 to compare, and with ``--no-bye``
(``workers.bye_on_worker_death`` off: before) against the default (the supervisor BYEs a dead
worker's calls: after).

    python -m benchmarks.dead_call [--session-expires 90] [--window 150] [--no-bye]
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from bridge.config import LogSettings, SipSettings, WorkerSettings
from bridge.core.admission import RoomDirectory
from bridge.devstack.ports import free_udp_tcp_port
from bridge.sip import devpeers as dp
from bridge.sip.pool import WorkerPool

ROOM = "dead"
ENDED = re.compile(r"terminated|call closed|closed:|session closed", re.IGNORECASE)


def run(session_expires: int, window: float, bye: bool = True) -> None:
    work = Path(tempfile.mkdtemp(prefix="dead-call-"))
    wav = work / "tone.wav"
    t = np.arange(int(8000 * (window + 90))) / 8000
    dp.write_wav(wav, (3000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16), 8000)
    pool = WorkerPool(
        SipSettings(
            port=free_udp_tcp_port(), rtp_port_start=33000, rtp_port_count=400,
            session_expires=session_expires,
        ),
        WorkerSettings(pool_size=1, media_timeout=0, bye_on_worker_death=bye),
        LogSettings(format="console", level="warning"),  # type: ignore[arg-type]
        directory=RoomDirectory.create((ROOM,)),
    )
    pool.start()
    baresip = dp.Baresip(work / "baresip", wav)
    sipp = dp.Sipp(
        dp.sipp_uac_scenario(ROOM, hold_ms=int((window + 30) * 1000), answer_bye=True),
        pool.front_port, work / "sipp", timeout_s=int(window + 90),
    )  # fmt: skip
    try:
        baresip.start(f"sip:{ROOM}@127.0.0.1:{pool.front_port}", int(window + 60))
        sipp.start()
        deadline = time.monotonic() + 20
        while len(pool.legs()) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        legs = len(pool.legs())
        time.sleep(3)
        pool.kill_worker(0)
        killed = time.monotonic()
        baresip_end = sipp_end = None
        log = work / "baresip" / "baresip.log"
        while time.monotonic() - killed < window and (baresip_end is None or sipp_end is None):
            text = log.read_text(errors="replace") if log.exists() else ""
            if baresip_end is None and ENDED.search(text):
                baresip_end = time.monotonic() - killed
            if sipp_end is None and sipp.proc is not None and sipp.proc.poll() is not None:
                sipp_end = time.monotonic() - killed
            time.sleep(0.2)
    finally:
        sipp.kill()
        baresip.stop()
        pool.stop()

    def shown(value: float | None) -> str:
        return f"{value:.1f} s" if value is not None else f"> {window:.0f} s (still up)"

    print(f"session_expires={session_expires} bye_on_worker_death={bye}: {legs} calls up, "
          "worker killed 3 s in")  # fmt: skip
    print(f"  baresip kept the dead call {shown(baresip_end)}")
    print(f"  SIPp kept the dead call    {shown(sipp_end)}")
    print(f"  work dir {work}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--session-expires", type=int, default=90)
    parser.add_argument("--window", type=float, default=150.0)
    parser.add_argument("--no-bye", dest="bye", action="store_false",
                        help="workers.bye_on_worker_death off (the 'before' figures)")  # fmt: skip
    args = parser.parse_args()
    run(args.session_expires, args.window, args.bye)
