"""A child server process that is always reaped, with its log kept for error messages."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from bridge.devstack.ports import wait_tcp


class ServerStartError(RuntimeError):
    """A local server did not come up; the message carries the tail of its log."""


class ServerProcess:
    def __init__(self, name: str, argv: list[str], log_path: Path, cwd: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_listening(self, ports: list[int], timeout: float) -> None:
        """Return once every port accepts connections; raise early if the server died."""
        deadline = time.monotonic() + timeout
        for port in ports:
            while not wait_tcp(port, 0.2):
                if not self.alive:
                    raise self.fail(f"exited with status {self.proc.returncode}")
                if time.monotonic() > deadline:
                    raise self.fail(f"did not listen on 127.0.0.1:{port} within {timeout:g}s")

    def fail(self, why: str) -> ServerStartError:
        self.stop()
        return ServerStartError(f"{self.name} {why}; last log lines:\n{self.log_tail()}")

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.alive:
            self.proc.kill()
        self.proc.wait()

    def stop(self, timeout: float = 5.0) -> None:
        if self.alive:
            self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
