"""Real SIP peers for tests and benchmarks: SIPp scenarios, baresip, speech audio, RTP pcaps.

Everything binds to 127.0.0.1. Audio helpers are pure numpy (G.711 encoders, pcap writer)
so a test can put known speech into a call and find it again in what a peer heard.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from bridge.devstack.ports import free_port, free_udp_tcp_port
from bridge.devstack.process import ServerProcess

# ---------------------------------------------------------------------------- audio


def speech(text: str, rate: int = 8000, workdir: Path | None = None) -> NDArray[np.int16]:
    """``text`` spoken by espeak-ng, resampled to ``rate`` by sox, as int16 mono."""
    tmp = Path(workdir or tempfile.mkdtemp(prefix="speech-"))
    raw, out = tmp / "espeak.wav", tmp / f"speech-{rate}.wav"
    subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, capture_output=True)
    subprocess.run(
        ["sox", str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(out)],
        check=True,
        capture_output=True,
    )
    return read_wav(out)[0]


def read_wav(path: Path) -> tuple[NDArray[np.int16], int]:
    """Mono int16 samples and rate of a 16-bit WAV file (first channel if stereo)."""
    with wave.open(str(path), "rb") as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        channels, rate = w.getnchannels(), w.getframerate()
    return data[::channels].astype(np.int16), rate


def make_certificate(workdir: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed P-256 certificate for ``host`` (IP SAN) and its key, for TLS tests."""
    workdir.mkdir(parents=True, exist_ok=True)
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", f"/CN={host}", "-addext", f"subjectAltName=IP:{host}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def write_wav(path: Path, samples: NDArray[np.int16], rate: int, channels: int = 1) -> None:
    """16-bit WAV; ``channels=2`` repeats the mono signal (baresip 1.0 wants its source to
    have the codec's channel count: 2 for opus/48000/2)."""
    frames = np.repeat(samples.astype("<i2"), channels) if channels > 1 else samples
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames.astype("<i2").tobytes())


def ulaw_encode(samples: NDArray[np.int16]) -> bytes:
    """G.711 µ-law (ITU-T G.711, as pjmedia and baresip decode it)."""
    x = samples.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    mag = np.minimum(np.abs(x), 32635) + 0x84
    exp = np.floor(np.log2(mag)).astype(np.int32) - 7
    exp = np.clip(exp, 0, 7)
    mant = (mag >> (exp + 3)) & 0x0F
    code: NDArray[np.uint8] = (~(sign | (exp << 4) | mant) & 0xFF).astype(np.uint8)
    return code.tobytes()


def ulaw_decode(data: bytes) -> NDArray[np.int16]:
    """G.711 µ-law bytes to linear int16 (the inverse of :func:`ulaw_encode`)."""
    code = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    exp = (code >> 4) & 0x07
    mag = (((code & 0x0F) << 3) + 0x84) << exp
    out: NDArray[np.int16] = np.where(code & 0x80, 0x84 - mag, mag - 0x84).astype(np.int16)
    return out


class RtpTap:
    """Keeps the PCMU RTP that arrives for a UDP port on loopback: a SIPp caller's ears.

    SIPp plays a pcap but cannot record what it receives, and the bridge latches on to the
    port SIPp sends from, so a second socket cannot stand in for it. This reads the packets
    off the loopback interface instead (``AF_PACKET``: needs CAP_NET_RAW, i.e. root in CI).
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.2)
        self.packets: dict[int, bytes] = {}  # extended sequence number → payload
        self.payload_types: set[int] = set()
        self._last = -1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rtp-tap", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if addr[2] == socket.PACKET_HOST:  # loopback shows each packet twice
                self._take(frame[14:])  # the loopback device's Ethernet-style header

    def _take(self, ip: bytes) -> None:
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
            return
        udp = ip[(ip[0] & 0x0F) * 4 :]
        if struct.unpack("!H", udp[2:4])[0] != self.port:
            return
        data = udp[8:]
        if len(data) < 12 or data[0] >> 6 != 2:
            return
        pt, seq = data[1] & 0x7F, struct.unpack("!H", data[2:4])[0]
        head = 12 + 4 * (data[0] & 0x0F)
        if data[0] & 0x10 and len(data) >= head + 4:
            head += 4 + 4 * struct.unpack("!H", data[head + 2 : head + 4])[0]
        self.payload_types.add(pt)
        if pt != 0:
            return  # telephone-event, comfort noise
        if self._last >= 0:  # unwrap the 16-bit sequence number
            seq += (self._last >> 16) << 16
            if seq < self._last - 0x8000:
                seq += 0x10000
        self._last = max(self._last, seq)
        self.packets[seq] = data[head:]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def audio(self) -> NDArray[np.int16]:
        """Received PCMU, decoded, in sequence order (8 kHz)."""
        payload = b"".join(self.packets[k] for k in sorted(self.packets))
        return ulaw_decode(payload)


def alaw_encode(samples: NDArray[np.int16]) -> bytes:
    """G.711 A-law."""
    x = samples.astype(np.int32) >> 3  # 13-bit
    sign = np.where(x >= 0, 0x80, 0)
    mag = np.minimum(np.where(x >= 0, x, -x - 1), 0xFFF)
    exp = np.where(mag >= 32, np.floor(np.log2(np.maximum(mag, 1))).astype(np.int32) - 4, 0)
    exp = np.clip(exp, 0, 7)
    mant = np.where(exp == 0, mag >> 1, mag >> exp) & 0x0F
    code: NDArray[np.uint8] = ((sign | (exp << 4) | mant) ^ 0x55).astype(np.uint8)
    return code.tobytes()


def write_rtp_pcap(
    path: Path,
    samples: NDArray[np.int16],
    *,
    payload_type: int = 0,
    ssrc: int = 0x5A5A0001,
    src_port: int = 6000,
    dst_port: int = 6002,
) -> float:
    """An RTP stream (20 ms G.711 packets, 8 kHz input) as a pcap for SIPp's
    ``play_pcap_audio``; returns its duration in seconds."""
    if payload_type not in (0, 8):
        raise ValueError("payload_type must be 0 (PCMU) or 8 (PCMA)")
    encode = ulaw_encode if payload_type == 0 else alaw_encode
    n = len(samples) // 160
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for i in range(n):
        payload = encode(samples[i * 160 : (i + 1) * 160])
        rtp = struct.pack("!BBHII", 0x80, payload_type, i & 0xFFFF, i * 160, ssrc) + payload
        udp = struct.pack("!HHHH", src_port, dst_port, 8 + len(rtp), 0)
        ip_len = 20 + len(udp) + len(rtp)
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, ip_len, i & 0xFFFF, 0, 64, 17, 0,
            bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]),
        )  # fmt: skip
        eth = b"\x00" * 12 + b"\x08\x00"
        frame = eth + ip + udp + rtp
        usec = i * 20000
        out += struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(frame), len(frame))
        out += frame
    path.write_bytes(bytes(out))
    return n * 0.02


def envelope(samples: NDArray[np.int16], rate: int, window_ms: int = 20) -> NDArray[np.float64]:
    """RMS per window: the shape of speech, robust to codecs and resampling."""
    w = rate * window_ms // 1000
    n = len(samples) // w
    x = samples[: n * w].astype(np.float64).reshape(n, w)
    env: NDArray[np.float64] = np.sqrt((x * x).mean(axis=1))
    return env


def best_correlation(
    heard: NDArray[np.float64], reference: NDArray[np.float64]
) -> tuple[float, int]:
    """Max normalised cross-correlation of two envelopes and its lag (in windows)."""
    if len(heard) < len(reference) or len(reference) < 4:
        return 0.0, 0
    ref = reference - reference.mean()
    ref_norm = float(np.sqrt((ref * ref).sum())) or 1.0
    best, lag = 0.0, 0
    for k in range(len(heard) - len(reference) + 1):
        seg = heard[k : k + len(reference)]
        seg = seg - seg.mean()
        norm = float(np.sqrt((seg * seg).sum()))
        if norm == 0:
            continue
        c = float((seg * ref).sum()) / (norm * ref_norm)
        if c > best:
            best, lag = c, k
    return best, lag


# ---------------------------------------------------------------------------- SIPp

_SIPP_HEAD = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="{name}">
"""


def caller_sdp(codec: int = 0) -> str:
    """The SDP body (SIPp keywords) our SIPp callers offer and answer refreshes with."""
    codec_name = "PCMU/8000" if codec == 0 else "PCMA/8000"
    return f"""v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP {codec} 101
      a=rtpmap:{codec} {codec_name}
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=sendrecv"""


def sipp_refused_scenario(room: str, status: int) -> str:
    """A caller whose plain-RTP (PCMU) INVITE must be refused with ``status`` (then ACKed):
    SIPp fails the call on any other answer."""
    return _SIPP_HEAD.format(name="bridge-uac-refused") + f"""  <send retrans="500">
    <![CDATA[
      INVITE sip:{room}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "SIPp caller" <sip:caller@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{room}@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:caller@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="{status}"/>
  <send>
    <![CDATA[
      ACK sip:{room}@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      [last_From:]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
</scenario>
"""


def sipp_uac_scenario(
    room: str,
    *,
    pcap: Path | None = None,
    hold_ms: int = 3000,
    extra_headers: str = "",
    codec: int = 0,
    follow_redirect: bool = True,
    dtmf_info: str = "",
    message: str = "",
    answer_bye: bool = False,
) -> str:
    """A caller that INVITEs ``sip:room@…``, follows one 302 (setdest to the Contact),
    plays ``pcap`` (RTP) for the call, optionally sends a SIP INFO DTMF digit and an
    in-dialog MESSAGE, waits ``hold_ms`` and hangs up with BYE. ``answer_bye``: a BYE from
    the bridge while holding is answered 200 and ends the scenario (logged as
    ``remote BYE`` with ``-trace_logs``), instead of aborting the call as unexpected."""
    hdrs = "".join(f"      {h}\n" for h in extra_headers.splitlines() if h.strip())
    sdp = caller_sdp(codec)
    invite = """  <send retrans="500">
    <![CDATA[
      INVITE sip:{room}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "SIPp caller [call_number]" <sip:caller[call_number]@[local_ip]:[local_port]>{from_tag}
      To: <sip:{room}@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: {cseq} INVITE
      Contact: <sip:caller[call_number]@[local_ip]:[local_port]>
      Max-Forwards: 70
{hdrs}      Content-Type: application/sdp
      Content-Length: [len]

      {sdp}
    ]]>
  </send>
"""
    tag0 = ";tag=[pid]SIPpTag00[call_number]"
    tag1 = ";tag=[pid]SIPpTag01[call_number]"  # the INVITE after a 302 is a new dialog
    parts = [_SIPP_HEAD.format(name="bridge-uac")]
    parts.append(invite.format(room=room, cseq=1, hdrs=hdrs, sdp=sdp, from_tag=tag0))
    parts.append('  <recv response="100" optional="true"/>\n')
    parts.append('  <recv response="180" optional="true"/>\n')
    if follow_redirect:
        parts.append(
            '  <recv response="200" rtd="true" rrs="true" optional="true" next="answered">\n'
            + _DIALOG_CAPTURE
            + "  </recv>\n"
        )
        parts.append(
            """  <recv response="302">
    <action>
      <ereg regexp="Contact:.*@([0-9.]+):([0-9]+)" search_in="msg" check_it="true"
            assign_to="c,host,port"/>
    </action>
  </recv>
  <send>
    <![CDATA[
      ACK sip:{room}@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      [last_From:]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <nop>
    <action>
      <log message="302 to [$c]"/>
      <setdest host="[$host]" port="[$port]" protocol="[transport]"/>
    </action>
  </nop>
""".replace("{room}", room)
        )
        parts.append(
            invite.format(room=room, cseq=2, hdrs=hdrs, sdp=sdp, from_tag=tag1).replace(
                "[remote_ip]:[remote_port]", "[$host]:[$port]"
            )
        )
        parts.append('  <recv response="100" optional="true"/>\n')
        parts.append('  <recv response="180" optional="true"/>\n')
        parts.append('  <recv response="200" rtd="true" rrs="true">\n' + _DIALOG_CAPTURE)
        parts.append("  </recv>\n")
        parts.append('  <label id="answered"/>\n')
    else:
        parts.append('  <recv response="200" rtd="true" rrs="true">\n' + _DIALOG_CAPTURE)
        parts.append("  </recv>\n")
    parts.append(
        """  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [last_From:]
      [last_To:]
      Call-ID: [call_id]
      [last_CSeq:]
      Contact: <sip:caller[call_number]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
""".replace("[last_CSeq:]", "CSeq: [cseq] ACK")
    )
    if pcap is not None:
        parts.append(f"""  <nop>
    <action>
      <exec play_pcap_audio="{pcap}"/>
    </action>
  </nop>
""")
    if dtmf_info:
        parts.append(
            _in_dialog("INFO", "application/dtmf-relay", f"Signal={dtmf_info}\r\nDuration=160")
        )
        parts.append('  <recv response="200"/>\n')
    if message:
        parts.append(
            _in_dialog(
                "MESSAGE", "text/plain", message, extra="Subject: hello\n      Content-Language: en"
            )
        )
        parts.append('  <recv response="200"/>\n')
    bye_label = "remote_bye" if answer_bye else ""
    parts.append(hold_answering_refreshes(hold_ms, sdp, bye_label=bye_label))
    parts.append(_in_dialog("BYE", "", ""))
    parts.append('  <recv response="200" crlf="true"/>\n')
    if answer_bye:
        parts.append(_ANSWER_BYE)
    parts.append("</scenario>\n")
    return "".join(parts)


_ANSWER_BYE = """  <nop next="done"/>
  <label id="remote_bye"/>
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
  <nop>
    <action>
      <log message="remote BYE [last_Reason:]"/>
    </action>
  </nop>
  <label id="done"/>
"""

#: From and To of the call, kept for in-dialog requests: after the bridge's session refresh
#: (a re-INVITE) SIPp's [last_From:] / [last_To:] would be the bridge's, not ours
_DIALOG_CAPTURE = """    <action>
      <ereg regexp=".*" search_in="hdr" header="From:" assign_to="dlg_from"/>
      <ereg regexp=".*" search_in="hdr" header="To:" assign_to="dlg_to"/>
    </action>
"""
DIALOG_FROM_TO = "From:[$dlg_from]\n      To:[$dlg_to]"

#: where a caller scenario starts holding the call (``bridge.demo.callers`` cuts there)
HOLD_MARK = "  <!-- hold -->\n"


def answer_refresh(sdp: str, next_label: str) -> str:
    """SIPp elements that answer the re-INVITE just received (an RFC 4028 session refresh
    from the bridge: every call has a session timer) with our SDP, then take the ACK."""
    return f"""  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:caller[call_number]@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      {sdp}
    ]]>
  </send>
  <recv request="ACK" next="{next_label}"/>
"""


def hold_answering_refreshes(hold_ms: int, sdp: str, bye_label: str = "") -> str:
    """Hold the call ``hold_ms`` (in steps of up to 1 s) while answering session refreshes:
    a plain ``<pause>`` would treat the bridge's re-INVITE as unexpected and abort.
    ``bye_label``: where a BYE received meanwhile jumps to."""
    step = max(1, min(1000, hold_ms))
    bye = (
        f'  <recv request="BYE" optional="true" timeout="{step}" ontimeout="tick" '
        f'next="{bye_label}"/>\n'
        if bye_label
        else ""
    )
    return f"""{HOLD_MARK}  <nop>
    <action>
      <assign assign_to="held" value="0"/>
    </action>
  </nop>
  <label id="hold"/>
  <nop>
    <action>
      <test assign_to="holding" variable="held" compare="less_than" value="{hold_ms}"/>
    </action>
  </nop>
  <nop next="held" test="holding"/>
  <nop next="hold_done"/>
  <label id="held"/>
{bye}  <recv request="INVITE" timeout="{step}" ontimeout="tick"/>
{answer_refresh(sdp, "hold")}  <label id="tick"/>
  <nop next="hold">
    <action>
      <add assign_to="held" value="{step}"/>
    </action>
  </nop>
  <label id="hold_done"/>
"""


def sipp_identity_scenario(
    room: str,
    *,
    from_user: str,
    from_host: str = "[local_ip]",
    extra_headers: str = "",
    authenticate: bool = False,
    expect: int = 200,
    hold_ms: int = 2000,
    dtmf_info: str = "",
) -> str:
    """A caller whose From (and any header, e.g. P-Asserted-Identity) the test chooses.

    ``authenticate``: expect a 401 and answer it with SIPp's digest (``-au``/``-ap``).
    ``expect``: the final status the INVITE must get; a non-2xx is ACKed and ends the
    scenario (so SIPp exits 0 only when the bridge answered exactly that).
    """
    hdrs = "".join(f"      {h}\n" for h in extra_headers.splitlines() if h.strip())
    sdp = """v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=sendrecv"""

    def invite(cseq: int, auth: str) -> str:
        return f"""  <send retrans="500">
    <![CDATA[
      INVITE sip:{room}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Caller {from_user}" <sip:{from_user}@{from_host}>;tag=[pid]SIPpTag[call_number]
      To: <sip:{room}@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: {cseq} INVITE
      Contact: <sip:{from_user}@[local_ip]:[local_port]>
      Max-Forwards: 70
{auth}{hdrs}      Content-Type: application/sdp
      Content-Length: [len]

      {sdp}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
"""

    def ack_error(cseq: int) -> str:
        return f"""  <send>
    <![CDATA[
      ACK sip:{room}@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      [last_From:]
      [last_To:]
      Call-ID: [call_id]
      CSeq: {cseq} ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
"""

    parts = [_SIPP_HEAD.format(name="identity-uac")]
    cseq = 1
    parts.append(invite(cseq, ""))
    if authenticate:
        parts.append('  <recv response="401" auth="true"/>\n')
        parts.append(ack_error(cseq))
        cseq = 2
        parts.append(invite(cseq, "      [authentication]\n"))
    if expect != 200:
        parts.append(f'  <recv response="{expect}"/>\n')
        parts.append(ack_error(cseq))
        parts.append("</scenario>\n")
        return "".join(parts)
    parts.append('  <recv response="200" rrs="true">\n' + _DIALOG_CAPTURE + "  </recv>\n")
    parts.append(
        """  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [last_From:]
      [last_To:]
      Call-ID: [call_id]
      CSeq: [cseq] ACK
      Contact: <sip:caller@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
"""
    )
    if dtmf_info:
        parts.append(
            _in_dialog("INFO", "application/dtmf-relay", f"Signal={dtmf_info}\r\nDuration=160")
        )
        parts.append('  <recv response="200"/>\n')
    parts.append(f'  <pause milliseconds="{hold_ms}"/>\n')
    parts.append(_in_dialog("BYE", "", ""))
    parts.append('  <recv response="200" crlf="true"/>\n')
    parts.append("</scenario>\n")
    return "".join(parts)


def _in_dialog(method: str, ctype: str, body: str, extra: str = "") -> str:
    ct = f"      Content-Type: {ctype}\n" if ctype else ""
    ex = f"      {extra}\n" if extra else ""
    return f"""  <send retrans="500">
    <![CDATA[
      {method} [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      {DIALOG_FROM_TO}
      Call-ID: [call_id]
      CSeq: [cseq] {method}
      Contact: <sip:caller[call_number]@[local_ip]:[local_port]>
      Max-Forwards: 70
{ct}{ex}      Content-Length: [len]

{body}
    ]]>
  </send>
"""


@dataclass
class SippResult:
    returncode: int
    stdout: str
    stderr: str
    errors: str = ""


@dataclass
class Sipp:
    """One SIPp client process (UDP unless ``transport='t1'``) on loopback."""

    scenario: str
    target_port: int
    workdir: Path
    calls: int = 1
    rate: float = 10.0
    limit: int = 0
    transport: str = "u1"
    timeout_s: int = 60
    extra_args: list[str] = field(default_factory=list)
    media_port: int = 0  # 0 = a free one
    proc: subprocess.Popen[bytes] | None = None
    local_ip: str = "127.0.0.1"  # another loopback address (127.0.0.2) plays a trusted peer

    def argv(self) -> list[str]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        scen = self.workdir / "scenario.xml"
        scen.write_text(self.scenario)
        media_port = self.media_port or free_port(2)  # SOCK_DGRAM
        self.media_port = media_port
        return [
            shutil.which("sipp") or "sipp",
            f"127.0.0.1:{self.target_port}",
            "-sf", str(scen),
            "-i", self.local_ip,
            "-p", str(free_udp_tcp_port()),
            "-mi", self.local_ip,
            "-mp", str(media_port),
            "-t", self.transport,
            "-m", str(self.calls),
            "-r", str(self.rate),
            "-l", str(self.limit or self.calls),
            "-timeout", f"{self.timeout_s}s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
            "-error_file", str(self.workdir / "errors.log"),
            *self.extra_args,
        ]  # fmt: skip

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv(),
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )

    def wait(self, timeout: float | None = None) -> SippResult:
        assert self.proc is not None
        try:
            out, err = self.proc.communicate(timeout=timeout or self.timeout_s + 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        errors = ""
        with contextlib.suppress(OSError):
            errors = (self.workdir / "errors.log").read_text(errors="replace")[-4000:]
        return SippResult(
            self.proc.returncode, out.decode(errors="replace")[-4000:],
            err.decode(errors="replace")[-4000:], errors,
        )  # fmt: skip

    def run(self) -> SippResult:
        self.start()
        return self.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------------------- baresip


class Baresip:
    """A headless baresip that dials one URI, plays a WAV and dumps what it hears.

    ``heard()`` returns the decoded audio it received (sndfile module, 16-bit mono).
    """

    def __init__(
        self,
        workdir: Path,
        source_wav: Path,
        *,
        codecs: tuple[str, ...] = ("g711",),
        transport: str = "udp",
        mediaenc: str = "",
        ca_file: Path | None = None,
        account: str = "",
    ):
        """``transport='tls'`` calls over SIP/TLS (trusting ``ca_file``); ``mediaenc``
        'srtp' offers SDES-SRTP (RTP/AVP + a=crypto), 'srtp-mand' requires it (RTP/SAVP).
        ``account``: a whole baresip accounts line instead (e.g. with ``;auth_pass=…``)."""
        self.account = account
        self.workdir = workdir
        self.source_wav = source_wav
        self.port = free_udp_tcp_port()
        self.codecs = codecs
        self.transport = transport
        self.mediaenc = mediaenc
        self.ca_file = ca_file
        self.server: ServerProcess | None = None

    def _write_config(self) -> None:
        d = self.workdir
        d.mkdir(parents=True, exist_ok=True)
        (d / "dump").mkdir(exist_ok=True)
        modules = "".join(f"module {c}.so\n" for c in self.codecs)
        if self.mediaenc:
            modules += "module srtp.so\n"
        tls = f"sip_cafile {self.ca_file}\n" if self.ca_file else ""
        (d / "config").write_text(
            f"""poll_method epoll
sip_listen 127.0.0.1:{self.port}
net_interface 127.0.0.1
audio_player aufile,/dev/null
audio_source aufile,{self.source_wav}
audio_alert aufile,/dev/null
audio_buffer 20-160
jitter_buffer_delay 1-10
rtp_stats no
module_path /usr/lib/baresip/modules
{modules}module aufile.so
module sndfile.so
module menu.so
module_tmp account.so
snd_path {d / "dump"}
{tls}"""
        )
        params = ";transport=tls" if self.transport == "tls" else ""
        enc = f";mediaenc={self.mediaenc}" if self.mediaenc else ""
        (d / "accounts").write_text(
            (self.account or f"<sip:listener@127.0.0.1{params}>;regint=0;answermode=manual{enc}")
            + "\n"
        )
        (d / "contacts").write_text("")

    def start(self, uri: str, seconds: int) -> None:
        self._write_config()
        self.server = ServerProcess(
            "baresip",
            ["baresip", "-f", str(self.workdir), "-t", str(seconds), "-e", f"/dial {uri}"],
            self.workdir / "baresip.log",
            self.workdir,
        )

    def wait(self, timeout: float) -> None:
        assert self.server is not None
        try:
            self.server.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.server.stop()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def heard(self) -> tuple[NDArray[np.int16], int]:
        """What the call's decoder produced (the ``*-dec.wav`` dump)."""
        files = sorted((self.workdir / "dump").glob("*dec*.wav"))
        if not files:
            raise FileNotFoundError(f"baresip wrote no decoder dump; log: {self.log_tail()}")
        return read_wav(files[-1])

    def log_tail(self) -> str:
        return self.server.log_tail(40) if self.server else ""
