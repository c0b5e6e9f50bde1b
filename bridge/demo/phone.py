"""``sipmuc-bridge phone``: a ready-made phone that dials the running demo, no sound card.

A real SIP user agent (pjsua2, a different process and account from the bridge's): it
dials the demo's room under a display name, says a greeting every 20 seconds (espeak-ng,
looped by pjmedia's WAV player, so the phone stays in the call for as long as you like),
records what it hears into ``<workdir>/phone/heard.wav``, prints the room's chat lines that
reach it as SIP MESSAGE, and sends each line you type as a SIP MESSAGE in the call. Ctrl-C
hangs up. PJSIP's own log goes to ``<workdir>/phone/pjsip.log``.

A softphone with a sound card needs none of this: dial the address the demo shows.
"""

from __future__ import annotations

import gc
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from bridge.demo.endpoints import DemoNotRunning, Endpoints, default_workdir
from bridge.demo.terminal import output_to
from bridge.devstack.ports import free_udp_tcp_port
from bridge.sip.devpeers import speech, write_wav

RATE = 16000
SILENCE_S = 20.0  # between two greetings
HANGUP_WAIT_S = 3.0


@dataclass(frozen=True)
class PhoneOptions:
    workdir: Path = field(default_factory=default_workdir)
    name: str = "Guest"
    uri: str = ""  # default: the demo's room, from <workdir>/endpoints.json
    greeting: str = ""  # default: "Hello, this is <name> on the phone."
    duration: float = 0.0  # 0 = until Ctrl-C


def user_part(name: str) -> str:
    """A SIP user part made of the display name's letters and digits (``guest`` for none)."""
    cleaned = "".join(ch for ch in name.lower() if ch.isascii() and ch.isalnum())
    return cleaned or "guest"


def make_greeting(text: str, path: Path) -> float:
    """``text`` spoken, then ``SILENCE_S`` of silence, as a 16 kHz WAV; returns its length."""
    voice = speech(text, RATE, path.parent)
    loop = np.concatenate([voice, np.zeros(int(SILENCE_S * RATE), dtype=np.int16)])
    write_wav(path, loop, RATE)
    return len(loop) / RATE


def run_phone(options: PhoneOptions) -> int:
    """Dial, stay until Ctrl-C (or ``duration``), hang up; 1 when the call failed."""
    workdir = options.workdir
    try:
        uri = options.uri or Endpoints.load(workdir).sip_uri
    except DemoNotRunning as error:
        print(f"sipmuc-bridge phone: {error}", file=sys.stderr)
        return 1
    phone_dir = workdir / "phone"
    phone_dir.mkdir(parents=True, exist_ok=True)
    greeting = options.greeting or f"Hello, this is {options.name} on the phone."
    try:
        make_greeting(greeting, phone_dir / "greeting.wav")
    except (OSError, RuntimeError) as error:
        print(f"sipmuc-bridge phone: cannot make the greeting ({error}); is espeak-ng "
              "installed? (scripts/bootstrap)", file=sys.stderr)  # fmt: skip
        return 1
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with output_to(phone_dir / "pjsip.log") as screen:
            return Phone(options, uri, phone_dir, screen, stop).run()
    finally:
        signal.signal(signal.SIGINT, previous)


class Phone:
    """One call, driven from the thread that owns pjsua2 (DESIGN: one owner thread)."""

    def __init__(self, options: PhoneOptions, uri: str, phone_dir: Path, screen: TextIO,
                 stop: threading.Event) -> None:  # fmt: skip
        self.options = options
        self.uri = uri
        self.dir = phone_dir
        self.screen = screen
        self.stop = stop
        self.typed: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.ended: str = ""  # why the call ended, once it has
        self.answered = False
        self.keep: list[Any] = []  # pjsua2 objects that must outlive their callbacks

    def say(self, text: str) -> None:
        self.screen.write(f"{text}\n")
        self.screen.flush()

    def run(self) -> int:
        from bridge.sip import pj  # pjsua2 only where a phone is wanted

        ep = pj.create_endpoint(calls=2, log_level=3, user_agent="sipmuc-bridge demo phone")
        try:
            tcfg = pj.pj.TransportConfig()
            tcfg.port = free_udp_tcp_port()
            tcfg.boundAddress = "127.0.0.1"
            tcfg.publicAddress = "127.0.0.1"
            ep.transportCreate(pj.pj.PJSIP_TRANSPORT_UDP, tcfg)
            ep.libStart()
            ep.audDevManager().setNullDev()  # headless: the conference bridge's own clock
            pj.set_codec_priorities(ep)
            return self._call(pj, ep)
        finally:
            self.keep.clear()
            gc.collect()
            ep.libDestroy()

    def _call(self, pj: Any, ep: Any) -> int:
        name = self.options.name.replace('"', "")
        acc = _account_class(pj)(self)
        cfg = pj.account_config(user=user_part(name), domain="127.0.0.1", rtp_start=40000,
                                rtp_count=2000, host="127.0.0.1")  # fmt: skip
        cfg.idUri = f'"{name}" <sip:{user_part(name)}@127.0.0.1>'
        cfg.sipConfig.contactParams = ""
        acc.create(cfg)
        call = _call_class(pj)(acc, self)
        self.keep += [acc, call]
        self.say(f"phone: calling {self.uri} as {name!r} …")
        call.makeCall(self.uri, pj.call_op())
        threading.Thread(target=self._read_stdin, name="phone-stdin", daemon=True).start()
        deadline = time.monotonic() + self.options.duration if self.options.duration else None
        while not self.ended and not self.stop.is_set():
            ep.libHandleEvents(20)
            self._send_typed(pj, call)
            if deadline is not None and time.monotonic() > deadline:
                break
        if not self.ended:
            self.say("phone: hanging up")
            if pj.is_active(call):
                call.hangup(pj.call_op())
            until = time.monotonic() + HANGUP_WAIT_S
            while not self.ended and time.monotonic() < until:
                ep.libHandleEvents(20)
            return 0
        self.say(f"phone: the call ended: {self.ended}")
        return 0 if self.answered else 1

    def _read_stdin(self) -> None:
        for line in sys.stdin:
            if line.strip():
                self.typed.put(line.strip())

    def _send_typed(self, pj: Any, call: Any) -> None:
        while True:
            try:
                text = self.typed.get_nowait()
            except queue.Empty:
                return
            if not self.answered:
                self.say("phone: not in the call yet; line not sent")
                continue
            try:
                pj.send_message(call, text, "text/plain", {})
            except Exception as error:
                self.say(f"phone: could not send: {pj.error_text(error)}")

    # ---- pjsua2 callbacks (on this thread, inside libHandleEvents) ------------------------

    def on_state(self, pj: Any, call: Any) -> None:
        info = call.getInfo()
        if info.state == pj.STATE_CONFIRMED and not self.answered:
            self.answered = True
            self.say(f"phone: in the call ({pj.codec_name(call) or 'audio'}); saying hello "
                     f"every {SILENCE_S:.0f} s; what you hear is recorded in "
                     f"{self.dir / 'heard.wav'}")  # fmt: skip
            self.say("phone: type a line and Enter to send it to the room (SIP MESSAGE); "
                     "Ctrl-C hangs up")  # fmt: skip
        elif info.state == pj.STATE_DISCONNECTED:
            self.ended = f"{info.lastStatusCode} {info.lastReason}".strip()

    def on_media(self, pj: Any, call: Any) -> None:
        if self.keep and any(isinstance(k, pj.pj.AudioMediaPlayer) for k in self.keep):
            return
        info = call.getInfo()  # keep it: its media vector points into it (SWIG)
        for media in info.media:
            if media.type == pj.MEDIA_AUDIO and media.status == pj.MEDIA_ACTIVE:
                audio = call.getAudioMedia(media.index)
                player = pj.pj.AudioMediaPlayer()
                player.createPlayer(str(self.dir / "greeting.wav"))  # loops by default
                player.startTransmit(audio)
                recorder = pj.pj.AudioMediaRecorder()
                recorder.createRecorder(str(self.dir / "heard.wav"))
                audio.startTransmit(recorder)
                self.keep += [player, recorder]
                return

    def on_message(self, body: str, status: int = 0) -> None:
        if status:
            if status >= 300:
                self.say(f"phone: the bridge refused the line ({status})")
            return
        for line in body.splitlines() or [""]:
            self.say(f"room> {line}")


def _account_class(pj: Any) -> Any:
    class PhoneAccount(pj.pj.Account):  # type: ignore[misc]
        def __init__(self, phone: Phone) -> None:
            super().__init__()
            self.phone = phone

        def onInstantMessage(self, prm: Any) -> None:  # noqa: N802
            self.phone.on_message(str(prm.msgBody))

    return PhoneAccount


def _call_class(pj: Any) -> Any:
    class PhoneCall(pj.pj.Call):  # type: ignore[misc]
        def __init__(self, account: Any, phone: Phone) -> None:
            super().__init__(account)
            self.phone = phone

        def onCallState(self, prm: Any) -> None:  # noqa: N802
            self.phone.on_state(pj, self)

        def onCallMediaState(self, prm: Any) -> None:  # noqa: N802
            self.phone.on_media(pj, self)

        def onInstantMessage(self, prm: Any) -> None:  # noqa: N802
            self.phone.on_message(str(prm.msgBody))

        def onInstantMessageStatus(self, prm: Any) -> None:  # noqa: N802
            self.phone.on_message("", int(prm.code) or 200)

        def onCallRedirected(self, prm: Any) -> int:  # noqa: N802
            return int(pj.pj.PJSIP_REDIRECT_ACCEPT)  # the front's 302 to a worker

    return PhoneCall
