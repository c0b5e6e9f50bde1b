"""The C floor for ``sip_capacity.py --mode native``: one plain pjsua2 process that answers
every call and mixes all of them in pjmedia's own conference bridge.

Same PJSIP build and codec table as our workers (``bridge.sip.pj.set_codec_priorities``),
the bridge at ``clock_rate`` (16 kHz by default, as in issue 17's reference figures),
resampler ``quality`` 4 like our workers, null sound device (pjmedia's own clock), every
call's audio connected to every other call's (full mesh, pjmedia's O(N²) mix). One pjsua2
thread (``threadCnt=0``, ``libHandleEvents``) plus pjmedia's clock thread, nothing in Python
on the 20 ms path. Run by :func:`serve` in a child process; the parent asks for the number
of calls with media over the pipe (``"count"``) and stops it with ``"stop"``.
"""

from __future__ import annotations

from multiprocessing.connection import Connection
from typing import Any


def serve(conn: Connection, port: int, rtp_start: int, calls: int, *, clock_rate: int = 16000,
          quality: int = 4) -> None:  # fmt: skip
    """Child process: a pjsua2 conference on 127.0.0.1:``port`` (UDP) until told to stop."""
    import pjsua2 as pj

    from bridge.sip import pj as pjw

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.uaConfig.maxCalls = calls + 8
    cfg.logConfig.level = 1
    cfg.logConfig.consoleLevel = 1
    med = cfg.medConfig
    med.clockRate = med.sndClockRate = clock_rate
    med.channelCount = 1
    med.audioFramePtime = 20
    med.noVad = True
    med.ecTailLen = 0
    med.quality = quality
    med.maxMediaPorts = 2 * calls + 16
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = port
    tcfg.boundAddress = tcfg.publicAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.audDevManager().setNullDev()
    pjw.set_codec_priorities(ep)
    ep.libStart()

    media: dict[int, Any] = {}  # call id → its AudioMedia, connected to every other
    live: dict[int, Any] = {}  # keep a Python reference to every Call (else 603)

    class Call(pj.Call):  # type: ignore[misc]
        def onCallMediaState(self, prm: Any) -> None:  # noqa: N802
            cid = self.getId()
            if cid in media:
                return
            info = self.getInfo()  # keep it alive: its media vector points into it
            for mi in info.media:
                if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                    am = self.getAudioMedia(mi.index)
                    for other in media.values():
                        am.startTransmit(other)
                        other.startTransmit(am)
                    media[cid] = am
                    return

        def onCallState(self, prm: Any) -> None:  # noqa: N802
            if self.getInfo().state == pj.PJSIP_INV_STATE_DISCONNECTED:
                cid = self.getId()
                media.pop(cid, None)
                live.pop(cid, None)

    class Account(pj.Account):  # type: ignore[misc]
        def onIncomingCall(self, prm: Any) -> None:  # noqa: N802
            call = Call(self, prm.callId)
            live[prm.callId] = call
            op = pj.CallOpParam(True)
            op.statusCode = 200
            call.answer(op)

    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:conference@127.0.0.1:{port}"
    acfg.mediaConfig.transportConfig.port = rtp_start
    acfg.mediaConfig.transportConfig.portRange = 4 * calls + 64
    acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    account = Account()
    account.create(acfg, True)
    conn.send("ready")
    try:
        while True:
            ep.libHandleEvents(10)
            if conn.poll():
                msg = conn.recv()
                if msg == "stop":
                    break
                conn.send(len(media))
        ep.hangupAllCalls()
        for _ in range(50):
            ep.libHandleEvents(10)
    finally:
        media.clear()
        live.clear()
        del account
        import gc

        gc.collect()
        ep.libDestroy()
