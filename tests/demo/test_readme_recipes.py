"""The README's "Join the demo yourself" recipe, run exactly as written on this machine.

``scripts/demo`` in one process, then the README's ``scripts/phone`` and ``scripts/chat``
lines as two more: the phone dials in and speaks, the chat user logs in over TLS, each one's
line reaches the other, the demo's screen shows both coming, talking, writing and leaving,
and Ctrl-C ends all three cleanly. Only ``SIPMUC_DEMO_DIR`` differs from a person's terminal
(the demo's files go to the test's directory); the ports are the demo's own choice (5060 and
5222 when free), which the clients find in its ``endpoints.json``.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bridge.xmpp.room import SPEAKING_STATUS

ROOT = Path(__file__).resolve().parents[2]
WAIT = 90.0  # generous: shared 2-core machine, a first demo start makes speech with espeak

pytestmark = [
    pytest.mark.servers,
    pytest.mark.skipif(
        not all(shutil.which(t) for t in ("prosody", "sipp", "espeak-ng", "sox")),
        reason="needs the Debian packages of scripts/apt-packages.txt (run scripts/bootstrap)",
    ),
]


def recipe() -> list[str]:
    """The commands of the README's recipe block, comments stripped."""
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("<!-- recipe:begin") :]
    block = block[block.index("```sh\n") + len("```sh\n") : block.index("```\n", 10)]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if
            line.split("#", 1)[0].strip()]  # fmt: skip


class Process:
    """A command whose output lines are collected as they come."""

    def __init__(self, command: str, env: dict[str, str]) -> None:
        self.command = command
        self.proc = subprocess.Popen(command.split(), cwd=ROOT, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        self.lines: list[str] = []
        self._new: queue.SimpleQueue[str] = queue.SimpleQueue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, predicate: Callable[[str], bool], what: str, within: float = WAIT) -> str:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if predicate(line):
                    return line
            if self.proc.poll() is not None and not any(predicate(x) for x in self.lines):
                break
            time.sleep(0.1)
        raise AssertionError(f"{self.command}: no {what}; its output:\n{self.text()}")

    def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def interrupt(self, within: float = 60.0) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(within)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError(f"{self.command} ignored Ctrl-C:\n{self.text()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@contextmanager
def running(command: str, env: dict[str, str]) -> Iterator[Process]:
    process = Process(command, env)
    try:
        yield process
    finally:
        process.kill()


def test_the_readme_recipe_works_as_written(tmp_path: Path) -> None:
    assert recipe() == ["scripts/phone", "scripts/chat"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPMUC_")}
    env["SIPMUC_DEMO_DIR"] = str(tmp_path / "demo")
    env["TMPDIR"] = str(tmp_path / "tmp")  # what the three leave behind, if anything
    (tmp_path / "tmp").mkdir()
    phone_cmd, chat_cmd = recipe()
    with running("scripts/demo", env) as demo:
        demo.wait_for(lambda line: "every step happened" in line, "end of the demo's script")
        sip = demo.wait_for(lambda line: "phone   scripts/phone" in line, "phone address")
        assert re.search(r"dials sip:demo@127\.0\.0\.1(:\d+)?;", sip), sip
        with running(phone_cmd, env) as phone:
            phone.wait_for(lambda line: line.startswith("phone: in the call"), "call")
            demo.wait_for(lambda line: "phone: Guest dialled in" in line, "the phone arriving")
            demo.wait_for(lambda line: "talking: Guest started talking" in line,
                          "the phone's greeting heard by the mixer")  # fmt: skip
            with running(chat_cmd, env) as chat:
                chat.wait_for(lambda line: "encrypted (TLS" in line, "a TLS login")
                chat.wait_for(lambda line: "Join by phone: sip:demo@" in line, "the subject")
                chat.wait_for(lambda line: line.startswith("chat: in demo@"), "the join")
                demo.wait_for(lambda line: "chat: Bob joined the room" in line, "bob arriving")
                # a caller speaking, as the chat user's client shows it
                chat.wait_for(lambda line: SPEAKING_STATUS in line, "who is speaking")
                phone.type("hello from my phone")
                chat.wait_for(lambda line: line == "Guest: hello from my phone", "phone line")
                demo.wait_for(lambda line: "chat: Guest: hello from my phone" in line, "shown")
                chat.type("hello from bob")
                phone.wait_for(lambda line: line == "room> Bob: hello from bob", "chat line")
                demo.wait_for(lambda line: "chat: Bob: hello from bob" in line, "shown")
                assert chat.interrupt() == 0, chat.text()
            demo.wait_for(lambda line: "chat: Bob left the room" in line, "bob leaving")
            assert phone.interrupt() == 0, phone.text()
        demo.wait_for(lambda line: "phone: Guest left the call" in line, "the phone leaving")
        assert (tmp_path / "demo" / "phone" / "heard.wav").stat().st_size > 44
        assert demo.interrupt() == 0, demo.text()
    assert "FAILED" not in demo.text()
    assert not (tmp_path / "demo" / "endpoints.json").exists(), "no stale endpoints"
    assert not list((tmp_path / "tmp").glob("tmp*")), "temporary directories left behind"
