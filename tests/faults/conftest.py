"""Fault tests: a whole node (real Prosody, real redis-server, pjsua2 workers) under
SIGKILL, restarts and pauses. Fixtures from ``tests/e2e`` plus a node run as its own OS
process (``python -m bridge run``) so that the supervisor itself can be killed with -9."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bridge.devstack.ports import free_port, free_udp_tcp_port
from bridge.devstack.prosody import ProsodyServer
from bridge.devstack.redis_server import RedisServer
from tests.e2e.conftest import ROOM, TRUSTED_PEER, make_node, moderated_prosody, node_settings
from tests.sip.rawsip import RawUac
from tests.xmpp.clients import ChatUser, chat_user

__all__ = ["make_node", "moderated_prosody", "node_settings"]

MUC = f"{ROOM}@conference.localhost"
WAIT = 20.0
REPO = Path(__file__).resolve().parents[2]


async def until(predicate: Callable[[], object], what: str, within: float = WAIT) -> None:
    """Poll ``predicate`` until it holds (the deadline only bounds a hung test)."""
    try:
        async with asyncio.timeout(within):
            while not predicate():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


@asynccontextmanager
async def moderator(prosody: ProsodyServer, user: str = "alice") -> AsyncIterator[ChatUser]:
    async with chat_user(prosody, user) as person:
        await person.join(MUC, user.capitalize())
        yield person


async def dial(port: int, user: str, display: str) -> tuple[RawUac, int]:
    """A caller behind the operator's PBX (the trusted peer 127.0.0.2 asserts it), so its
    nick is plain and its moderation survives calls and restarts (issue 18)."""
    uac = RawUac(
        port, user=user, display=display, bind=TRUSTED_PEER,
        extra_headers=(f"P-Asserted-Identity: <sip:{user}@pbx.example>",),
    )  # fmt: skip
    final = await asyncio.to_thread(uac.invite, ROOM)
    return uac, final.status


@dataclass
class BridgeProcess:
    """``python -m bridge run`` configured by environment variables, as an operator runs it."""

    prosody: ProsodyServer
    redis: RedisServer
    workdir: Path
    sip_port: int = field(default_factory=free_udp_tcp_port)
    http_port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIPMUC_")}
        env.update({
            "SIPMUC_ROOMS": json.dumps([ROOM]),
            "SIPMUC_XMPP__COMPONENT_JID": self.prosody.component_domain,
            "SIPMUC_XMPP__SECRET": self.prosody.component_secret,
            "SIPMUC_XMPP__PORT": str(self.prosody.component_port),
            "SIPMUC_XMPP__MUC_SERVICE": self.prosody.muc_domain,
            "SIPMUC_SIP__DOMAIN": "127.0.0.1",
            "SIPMUC_SIP__PORT": str(self.sip_port),
            "SIPMUC_SIP__RTP_PORT_START": str(10000 + self.sip_port % 20000),
            "SIPMUC_SIP__RTP_PORT_COUNT": "200",
            "SIPMUC_WORKERS__POOL_SIZE": "1",
            "SIPMUC_WORKERS__MEDIA_TIMEOUT": "0",
            "SIPMUC_REDIS__URL": self.redis.url,
            "SIPMUC_HTTP__PORT": str(self.http_port),
            "SIPMUC_LOG__FORMAT": "json",
            "SIPMUC_IDENTITY__TRUSTED_PEERS": json.dumps([TRUSTED_PEER]),  # the test "PBX"
            # a stable replica name (a StatefulSet pod name, a systemd unit): the restarted
            # node takes its room leases back at once instead of waiting for their TTL
            "SIPMUC_STATE__NODE_ID": "fault-node-a",
            "PYTHONPATH": str(REPO),
        })  # fmt: skip
        env.update(self.extra_env)
        return env

    @property
    def log_path(self) -> Path:
        return self.workdir / f"bridge-{self.runs}.log"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.runs += 1
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bridge", "run"], cwd=self.workdir, env=self.env(),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip

    def ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"bridge exited {self.proc.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz", timeout=2):
                return True
        except (urllib.error.URLError, OSError):
            return False

    async def wait_ready(self, within: float = 60.0) -> None:
        await until(self.ready, f"bridge ready\n{self.log_tail()}", within)

    def family(self) -> list[psutil.Process]:
        """The supervisor and its worker processes."""
        assert self.proc is not None
        try:
            me = psutil.Process(self.proc.pid)
            return [me, *me.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill9(self) -> list[psutil.Process]:
        """SIGKILL the supervisor only, as the OOM killer would; returns its children."""
        assert self.proc is not None
        children = self.family()[1:]
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        return children

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        family = self.family()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            for p in family:
                with contextlib.suppress(psutil.Error):
                    p.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def log_events(self) -> list[dict[str, object]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out
