"""Child process of tests/sip/test_frame_port_teardown.py: frame ports freed the worker's way
while a fast media clock makes the conference bridge call them (run under PYTHONMALLOC=debug).

    python -m tests.sip.frame_port_churn <iterations>
"""

from __future__ import annotations

import ctypes
import faulthandler
import gc
import sys
import time

from bridge.sip import pj as pjw


def main(iterations: int) -> None:
    faulthandler.enable()
    ep = pjw.create_endpoint(calls=8, log_level=1, user_agent="frame-port-churn")
    ep.audDevManager().setNoDev()
    no_snd = pjw.shared_library().pjsua_set_no_snd_dev
    no_snd.argtypes, no_snd.restype = [], ctypes.c_void_p
    master = no_snd()
    ep.libStart()
    # a 1 ms tick (20x the real rate) makes a callback in flight at a port's end likely
    clock = pjw.MediaClock(int(master), pjw.BRIDGE_RATE // 50, period_s=0.001)
    clock.start()
    gc.disable()  # the worker collects only on its own thread, at its own times
    live: list[tuple[pjw.FramePort, pjw.FramePort]] = []
    graveyard: list[pjw.FramePort] = []
    for i in range(iterations):
        a, b = pjw.FramePort(f"a{i}"), pjw.FramePort(f"b{i}")
        a.startTransmit(b)  # the bridge now calls a's onFrameRequested, b's onFrameReceived
        b.startTransmit(a)
        live.append((a, b))
        if len(live) > 3:
            graveyard.extend(live.pop(0))
            del a, b
            pjw.bury_ports(graveyard)  # what Worker does one loop turn after a leg ends
        # pjmedia frees removed ports at its next tick: one pair per tick keeps the bridge
        # from filling up (PJ_ETOOMANY) when the machine stalls the clock thread
        ticks = clock.stats().ticks
        while clock.stats().ticks == ticks:
            time.sleep(0.0002)
    for pair in live:
        graveyard.extend(pair)
    live.clear()
    pjw.bury_ports(graveyard)
    ticks = clock.stats().ticks
    clock.stop()
    ep.libDestroy()
    print(f"ok {iterations} port pairs, {ticks} ticks")


if __name__ == "__main__":
    main(int(sys.argv[1]))
