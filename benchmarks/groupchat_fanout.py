"""Supervisor CPU for chat lines in a room with N puppets (issue 22).

A MUC sends every groupchat line to every occupant, so a room with N puppets delivers N + 1
copies of each line to the bridge's component. The bridge relays only the control
occupant's copy; since issue 22 the puppets' copies are dropped on the raw XML element
(``BridgeComponent._spawn_event``) instead of each becoming a slixmpp stanza that every
handler's matcher inspects. This benchmark measures the component process's CPU time while
a chat user sends lines at a fixed rate, once with the old path (every copy built and
dispatched: the baseline) and once with the drop, in the same run on the same Prosody.

    python -m benchmarks.groupchat_fanout [--puppets 60] [--rate 10] [--seconds 20]

The component runs in a child process (its CPU is what is measured); the chat user runs in
this process. Loopback only; a throw-away Prosody is started and stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import tempfile
import time
import xml.etree.ElementTree as ET
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from slixmpp import ComponentXMPP

from bridge.config import XmppSettings
from bridge.core.events import LegJoined, SendSipMessage
from bridge.devstack.prosody import ProsodyServer
from bridge.xmpp.component import BridgeComponent
from tests.xmpp.clients import chat_user

ROOM = "fanout"


class BaselineComponent(BridgeComponent):
    """The path before issue 22: every copy becomes a stanza and is dispatched."""

    def _spawn_event(self, xml: ET.Element) -> None:
        ComponentXMPP._spawn_event(self, xml)


def _component_main(
    settings: dict[str, Any], puppets: int, baseline: bool, conn: Connection
) -> None:
    asyncio.run(_component(XmppSettings(**settings), puppets, baseline, conn))


async def _component(
    settings: XmppSettings, puppets: int, baseline: bool, conn: Connection
) -> None:
    kind = BaselineComponent if baseline else BridgeComponent
    component = kind(settings)
    await component.start()
    relayed = 0

    def sink(event: object) -> None:
        nonlocal relayed
        if isinstance(event, SendSipMessage):
            relayed += 1

    room_jid = f"{ROOM}@{settings.muc_service}"
    room = await component.link_room(room_jid, f"sip:{ROOM}@127.0.0.1", sink=sink)
    while not room.joined:
        await asyncio.sleep(0.05)
    for n in range(puppets):
        await room.caller_joined(
            LegJoined(
                leg_id=f"leg-{n}", room=ROOM, call_id=f"c{n}@bench", worker=0,
                from_uri=f"sip:caller{n}@127.0.0.1", display_name=f"Phone {n}",
            )
        )
    loop = asyncio.get_running_loop()
    conn.send(("ready", len(room.present_puppets)))
    await loop.run_in_executor(None, conn.recv)  # "start"
    cpu0, relayed0 = time.process_time(), relayed
    await loop.run_in_executor(None, conn.recv)  # "stop"
    cpu = time.process_time() - cpu0
    conn.send(("done", cpu, relayed - relayed0, component.groupchat_copies_dropped))
    await component.close()


async def _run(prosody: ProsodyServer, puppets: int, rate: float, seconds: float,
               baseline: bool) -> dict[str, float]:  # fmt: skip
    settings = {
        "component_jid": prosody.component_domain,
        "secret": prosody.component_secret,
        "host": "127.0.0.1",
        "port": prosody.component_port,
        "muc_service": prosody.muc_domain,
        "rate_limit_burst": 100_000,
        "rate_limit_per_minute": 1_000_000.0,
        "self_ping_interval": 3600.0,
    }
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_component_main, args=(settings, puppets, baseline, child))
    proc.start()
    try:
        ready = await asyncio.to_thread(parent.recv)
        present = int(ready[1])
        async with chat_user(prosody, "alice") as alice:
            room_jid = f"{ROOM}@{prosody.muc_domain}"
            await alice.join(room_jid, "Alice")
            lines = int(rate * seconds)
            parent.send("start")
            start = time.monotonic()
            for n in range(lines):
                await alice.say(room_jid, f"line {n} " + "x" * 40)
                await asyncio.sleep(max(0.0, start + (n + 1) / rate - time.monotonic()))
            await asyncio.sleep(1.0)  # let the last lines through
            wall = time.monotonic() - start
            parent.send("stop")
            _, cpu, relayed, dropped = await asyncio.to_thread(parent.recv)
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    return {"present": present, "lines": lines, "cpu": cpu, "wall": wall,
            "relayed": relayed, "dropped": dropped}  # fmt: skip


async def main(puppets: int, rate: float, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        prosody = ProsodyServer(Path(tmp) / "prosody", users={"alice": "alice-pw"})
        prosody.start()
        try:
            before = await _run(prosody, puppets, rate, seconds, baseline=True)
            after = await _run(prosody, puppets, rate, seconds, baseline=False)
        finally:
            prosody.stop()
    print(f"groupchat fan-out: {puppets} puppets, {rate:g} lines/s for {seconds:g} s")
    print(f"{'':28}{'every copy parsed':>20}{'puppet copies dropped':>24}")
    for label, key, fmt in (
        ("puppets in the room", "present", "{:.0f}"),
        ("lines sent", "lines", "{:.0f}"),
        ("SIP MESSAGEs produced", "relayed", "{:.0f}"),
        ("copies dropped unparsed", "dropped", "{:.0f}"),
        ("component CPU (s)", "cpu", "{:.2f}"),
    ):
        print(f"{label:28}{fmt.format(before[key]):>20}{fmt.format(after[key]):>24}")
    for label, run in (("before", before), ("after", after)):
        share = 100 * run["cpu"] / run["wall"]
        per_line = 1000 * run["cpu"] / max(1, run["lines"])
        print(f"{label}: {share:.1f} % of a core, {per_line:.2f} ms CPU per line")
    print(f"ratio after/before (CPU): {after['cpu'] / max(1e-9, before['cpu']):.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--puppets", type=int, default=60)
    parser.add_argument("--rate", type=float, default=10.0, help="chat lines per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    asyncio.run(main(args.puppets, args.rate, args.seconds))
