"""Where the running demo listens, kept in ``<workdir>/endpoints.json`` while it runs.

The demo prefers 5060 and 5222 but takes other ports when those are busy; the ready-made
clients (``sipmuc-bridge phone``, ``sipmuc-bridge chat``) read this file, so the README's
recipes never name a port the demo might not use.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_WORKDIR = Path("var/demo")
WORKDIR_ENV = "SIPMUC_DEMO_DIR"
FILE_NAME = "endpoints.json"


def default_workdir() -> Path:
    """``$SIPMUC_DEMO_DIR`` or ``var/demo``: the demo and its clients agree on it."""
    return Path(os.environ.get(WORKDIR_ENV) or DEFAULT_WORKDIR)


class DemoNotRunning(RuntimeError):
    """No demo writes its endpoints into this directory (it is not running there)."""


@dataclass(frozen=True)
class Endpoints:
    """Where the demo's pieces listen (printed for real clients, read by ours)."""

    room: str
    muc_jid: str
    sip_uri: str  # dialable: sip:<room>@127.0.0.1[:port]
    sip_port: int
    c2s_port: int
    guest_user: str
    guest_password: str
    certificate: str = ""  # PEM file of the XMPP server's self-signed certificate
    certificate_sha256: str = ""

    def how_to_connect(self) -> str:
        lines = [
            "Join it yourself (without --duration the demo runs until Ctrl-C), in another "
            "terminal:",
            f"  phone   scripts/phone   (dials {self.sip_uri}; or any softphone on this machine)",
            f"  chat    scripts/chat    (logs in as {self.guest_user}; or any XMPP client: "
            f"{self.guest_user} / {self.guest_password}, server 127.0.0.1 port "
            f"{self.c2s_port}, room {self.muc_jid})",
            f"  events  SUBSCRIBE {self.sip_uri} with Event: conference (RFC 4575)",
        ]
        if self.certificate_sha256:
            lines.append(
                f"  TLS     self-signed certificate {self.certificate}, SHA-256 "
                f"{self.certificate_sha256}"
            )
        return "\n".join(lines)

    def save(self, workdir: Path) -> Path:
        path = workdir / FILE_NAME
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, workdir: Path) -> Endpoints:
        path = workdir / FILE_NAME
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise DemoNotRunning(
                f"no demo is running with workdir {workdir} ({path} is missing): start "
                "scripts/demo first, in another terminal"
            ) from None
        except (OSError, ValueError) as error:
            raise DemoNotRunning(f"cannot read {path}: {error}") from None
        try:
            return cls(**data)
        except TypeError as error:
            raise DemoNotRunning(f"{path} does not describe a demo: {error}") from None
