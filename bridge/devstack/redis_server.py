"""A throw-away ``redis-server`` on loopback."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from bridge.devstack.ports import free_port
from bridge.devstack.process import ServerProcess, ServerStartError


@dataclass
class RedisServer:
    workdir: Path
    port: int = field(default_factory=free_port)
    password: str | None = None
    appendonly: bool = True
    process: ServerProcess | None = None

    def __post_init__(self) -> None:
        self.workdir = self.workdir.resolve()

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerStartError("redis-server is not installed (Debian package redis-server)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.workdir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--daemonize", "no",
            "--protected-mode", "yes",
        ]  # fmt: skip
        if self.password:
            argv += ["--requirepass", self.password]
        self.process = ServerProcess("redis-server", argv, self.workdir / "redis.log", self.workdir)
        self.process.wait_listening([self.port], timeout)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def restart(self, timeout: float = 10.0) -> None:
        """Stop and start again on the same port and data (AOF keeps the state)."""
        self.stop()
        self.start(timeout)
