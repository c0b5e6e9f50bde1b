"""The README's first command: ``sipmuc-bridge demo`` runs the whole product and ends cleanly.

Run as a newcomer would (a subprocess, stdout not a terminal, so plain progress lines), on
free loopback ports. Each step's line is the demo's own check of a real effect (a puppet in
the room, a NOTIFY, a leg muted in the mixer, a line in the chat), so the test reads them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.devstack.ports import free_port, free_udp_tcp_port

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("prosody", "sipp", "espeak-ng", "sox")),
    reason="needs the Debian packages of scripts/apt-packages.txt (run scripts/bootstrap)",
)

ROOT = Path(__file__).resolve().parents[2]


def _demo(tmp_path: Path, *args: str) -> tuple[list[str], int, int]:
    sip, xmpp = free_udp_tcp_port(), free_port()
    argv = [sys.executable, "-m", "bridge", "demo", "--workdir", str(tmp_path / "demo"),
            "--sip-port", str(sip), "--xmpp-port", str(xmpp), *args]  # fmt: skip
    return argv, sip, xmpp


def _port_free(port: int) -> bool:
    """Nothing listens on ``port`` (closed connections in TIME_WAIT do not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_demo_shows_every_step_and_exits_cleanly(tmp_path: Path) -> None:
    argv, sip, xmpp = _demo(tmp_path, "--duration", "25")
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=400,
                          check=False, env=env)  # fmt: skip
    out = done.stdout
    log = tmp_path / "demo" / "bridge.log"
    context = f"stdout:\n{out}\nstderr:\n{done.stderr}\nlog tail:\n" + (
        "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log.exists() else ""
    )
    assert done.returncode == 0, context
    assert "FAILED" not in out, context
    expected = [
        f"audio-video-uri = sip:demo@127.0.0.1:{sip}",  # the room advertises the call
        "grouptextchat: xmpp:demo@conference.localhost?join",  # the call advertises the room
        "talking: Carol started talking",
        "talking: Dave started talking",
        "MESSAGE relayed: Dave: Dave here",  # a caller's SIP MESSAGE in the room
        "relayed to Carol, Dave",  # the chat user's line reached both phones
        "mute effect: Carol speaks at",  # still speaking …
        "in the mix: silent",  # … and nothing of it reaches the others
        "muted: Carol's leg is muted in the mixer",
        "NOTIFY: muted-via-focus",
        f"dials sip:demo@127.0.0.1:{sip}",  # how to connect a phone
        f"server 127.0.0.1 port {xmpp}",  # and an XMPP client
        "demo finished",
    ]
    for text in expected:
        assert text in out, f"missing {text!r}\n{context}"
    assert list((tmp_path / "demo" / "notifies").glob("notify-*.xml")), "NOTIFYs kept"
    assert _port_free(xmpp), "Prosody still listening after the demo"
    assert "TLS certificate (self-signed, made now)" in out and "SHA-256 fingerprint" in out
    assert not re.search(r"\b1 users\b", out), "plural"
    assert not list((tmp_path / "tmp").glob("tmp*")), "a temporary directory left behind"
    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    noisy = [e for e in events if e["level"] in ("warning", "error")
             and e["event"] in ("xmpp.disconnected", "demo.step_failed")]  # fmt: skip
    assert not noisy, f"a normal shutdown logged {noisy}"


def test_ctrl_c_stops_the_demo_cleanly(tmp_path: Path) -> None:
    argv, _, xmpp = _demo(tmp_path)  # no --duration: runs until interrupted
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "DONE chat user joins the room" in line:
                break
        else:
            pytest.fail(f"the demo ended early: {proc.stderr.read() if proc.stderr else ''}")
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest + err
    assert "stopped (Ctrl-C)" in rest
    assert _port_free(xmpp), "Prosody still listening after Ctrl-C"
