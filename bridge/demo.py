"""``sipmuc-bridge demo``: a local Prosody, an embedded Redis and the bridge, on loopback.

Needs nothing but the Debian packages that ``scripts/bootstrap`` installs. The XMPP server keeps
its data in ``./var/demo`` so the demo room survives a restart of the demo.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bridge.app import serve
from bridge.config import LogSettings, Settings
from bridge.devstack.ports import free_port
from bridge.devstack.prosody import ProsodyServer
from bridge.logs import configure, get_logger

DEMO_USERS = {"alice": "alice", "bob": "bob"}
PREFERRED_C2S_PORT = 5222


def _port_or_free(preferred: int) -> int:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            return free_port()
    return preferred


def run_demo(workdir: Path, log_settings: LogSettings) -> int:
    configure(log_settings)
    log = get_logger("bridge.demo")
    prosody = ProsodyServer(
        workdir / "prosody",
        users=dict(DEMO_USERS),
        c2s_port=_port_or_free(PREFERRED_C2S_PORT),
        component_secret="demo-secret",
    )
    prosody.start()
    log.info(
        "demo.xmpp_server",
        c2s=f"127.0.0.1:{prosody.c2s_port}",
        users={f"{user}@{prosody.domain}": password for user, password in DEMO_USERS.items()},
        muc=prosody.muc_domain,
        hint="log in with any XMPP client (plaintext auth allowed on loopback)",
    )
    settings = Settings(
        demo=True,
        xmpp={
            "component_jid": prosody.component_domain,
            "secret": prosody.component_secret,
            "port": prosody.component_port,
            "muc_service": prosody.muc_domain,
        },
        redis={"embedded_dir": workdir / "redis"},
        log=log_settings,
    )
    try:
        asyncio.run(serve(settings))
    finally:
        prosody.stop()
    return 0
