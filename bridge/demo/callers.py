"""The demo's simulated phones: SIPp callers that speak espeak-ng sentences over real RTP.

Each caller is one SIPp process running a scenario built here: INVITE the room (following the
front's 302), stream G.711 made from espeak-ng speech in a loop (SIPp's ``rtp_stream`` with
loop count -1, so a caller talks for as long as the demo runs, not for as long as a file
lasts), optionally send one in-dialog MESSAGE after a delay, answer every MESSAGE the bridge
sends (mute notices, chat text) with 200, and stay in the call until the demo stops it. The
two callers take turns (one talks in the first half of each cycle, the other in the second)
so that "who is talking" visibly moves between them.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from bridge.sip.devpeers import (
    DIALOG_FROM_TO,
    HOLD_MARK,
    Sipp,
    answer_refresh,
    caller_sdp,
    sipp_uac_scenario,
    speech,
    ulaw_encode,
)

RATE = 8000
CYCLE_S = 8.0  # one caller talks in each half of this cycle
SIPP_LIFETIME_S = 7 * 24 * 3600  # SIPp needs a global timeout: a week is "until stopped"


@dataclass(frozen=True)
class CallerScript:
    """Who the caller is, what they say, and the chat line they send from the phone."""

    user: str  # SIP user part of the caller's From URI
    display: str  # display name: becomes the caller's nick in the room
    sentences: tuple[str, ...]
    first_half: bool  # talks in the first (True) or second half of each cycle
    message: str = ""  # in-dialog SIP MESSAGE sent ``message_after_ms`` after the answer
    message_after_ms: int = 0


CALLERS = (
    CallerScript(
        user="carol",
        display="Carol",
        sentences=(
            "Good morning everyone, this is Carol calling from the train.",
            "The release notes are ready, I will send them after the call.",
        ),
        first_half=True,
    ),
    CallerScript(
        user="dave",
        display="Dave",
        sentences=(
            "Hi, Dave here. I can hear you all clearly.",
            "The new build passed every test last night.",
        ),
        first_half=False,
        message="Dave here: I am on my phone, sending this line from the call.",
        message_after_ms=4000,
    ),
)


def speech_track(script: CallerScript, workdir: Path) -> NDArray[np.int16]:
    """One loop of 8 kHz audio: each sentence once, in the caller's half of a cycle.

    The loop lasts ``len(sentences)`` cycles, so both callers' loops have the same length
    when they say as many sentences and their turns stay interleaved however long it runs.
    """
    clips = []
    for i, text in enumerate(script.sentences):
        (workdir / f"s{i}").mkdir(parents=True, exist_ok=True)
        clips.append(speech(text, RATE, workdir / f"s{i}"))
    half = int(CYCLE_S / 2 * RATE)
    track = np.zeros(len(clips) * 2 * half, dtype=np.int16)
    for i, clip in enumerate(clips):
        start = 2 * half * i + (0 if script.first_half else half)
        said = clip[:half]
        track[start : start + len(said)] = said
    return track


def demo_scenario(room: str, script: CallerScript, audio: Path) -> str:
    """SIPp scenario of one demo caller (see the module docstring); ``audio`` holds raw
    G.711 µ-law bytes that SIPp streams in a loop."""
    base = sipp_uac_scenario(room, pcap=None, hold_ms=0)
    head = base[: base.index(HOLD_MARK)]
    head = head.replace('"SIPp caller [call_number]"', f'"{script.display}"')
    head = head.replace("caller[call_number]", script.user)
    head += f"""  <nop>
    <action>
      <exec rtp_stream="{audio},-1,0"/>
    </action>
  </nop>
"""
    contact = f"<sip:{script.user}@[local_ip]:[local_port]>"
    parts = [head]
    if script.message:
        parts.append(f"""  <pause milliseconds="{script.message_after_ms}"/>
  <send retrans="500">
    <![CDATA[
      MESSAGE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      {DIALOG_FROM_TO}
      Call-ID: [call_id]
      CSeq: [cseq] MESSAGE
      Contact: {contact}
      Max-Forwards: 70
      Content-Type: text/plain
      Content-Length: [len]

{script.message}
    ]]>
  </send>
  <recv response="200"/>
""")
    # Idle: wait for requests from the bridge (mute notices, chat text) and answer them; a
    # BYE ends the call. A MESSAGE that comes while this caller is busy sending its own is
    # "unexpected" (ignored: -default_behaviors without abortunexp) and matched here when the
    # bridge retransmits it.
    refresh = answer_refresh(caller_sdp(), "idle")
    parts.append("""  <label id="idle"/>
  <recv request="BYE" optional="true" next="bye"/>
  <recv request="INVITE" optional="true" next="refresh"/>
  <recv request="MESSAGE" timeout="1000" ontimeout="idle"/>
  <send next="idle">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
  <label id="refresh"/>
""" + refresh.replace("caller[call_number]", script.user) + """  <label id="bye"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
</scenario>
""")
    return "".join(parts)


@dataclass
class DemoCaller:
    """One running SIPp caller."""

    script: CallerScript
    sipp: Sipp
    workdir: Path = field(default_factory=Path)
    ended_reported: bool = False

    @property
    def stopped(self) -> bool:
        """Started and already exited (SIPp ends only on an error before the demo ends)."""
        proc = self.sipp.proc
        return proc is not None and proc.poll() is not None

    def problem(self) -> str:
        """Why SIPp stopped (its error log), for a failed demo step."""
        result = self.sipp.wait(timeout=1)
        return (result.errors or result.stderr or result.stdout)[-1500:]

    def stop(self) -> None:
        self.sipp.kill()


def require_tools() -> None:
    """Fail with the Debian package names when a tool of the simulated callers is missing."""
    missing = [
        f"{tool} (Debian package {pkg})"
        for tool, pkg in (("sipp", "sip-tester"), ("espeak-ng", "espeak-ng"), ("sox", "sox"))
        if shutil.which(tool) is None
    ]
    if missing:
        raise RuntimeError("missing for the simulated callers: " + ", ".join(missing)
                           + " — run scripts/bootstrap")  # fmt: skip


def prepare(script: CallerScript, room: str, sip_port: int, workdir: Path) -> DemoCaller:
    """Make the caller's looped speech and scenario (espeak-ng + sox take about a second)."""
    workdir.mkdir(parents=True, exist_ok=True)
    audio = workdir / "speech.ulaw"
    audio.write_bytes(ulaw_encode(speech_track(script, workdir)))
    sipp = Sipp(
        demo_scenario(room, script, audio),
        sip_port,
        workdir,
        timeout_s=SIPP_LIFETIME_S,
        extra_args=["-default_behaviors", "all,-abortunexp"],
    )
    return DemoCaller(script, sipp, workdir)
