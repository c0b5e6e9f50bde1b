"""Issue 19: a room owner tries to turn ``!dial`` and ``!link <uri>`` against the operator.

Toll fraud (numbers outside the plan), SSRF / port scanning (IP literals, ports, ``maddr``,
URI headers, names that resolve to the internal network), and dialling into our own rooms
(a tenant who names a room like a number). Every attempt is refused with a plain reply and
nothing reaches the network: a trap socket stands where the trunk proxy would be.
"""

from __future__ import annotations

import socket
from typing import Any

from bridge.devstack.ports import free_udp_tcp_port
from bridge.devstack.prosody import ProsodyServer
from tests.e2e.conftest import ROOM, NodeFactory
from tests.e2e.test_commands import command, owner


def _sip(**dialout: Any) -> dict[str, Any]:
    sip_port = free_udp_tcp_port()
    return {
        "domain": "127.0.0.1", "port": sip_port, "rtp_port_start": 10000 + sip_port % 20000,
        "limits": {"trusted_sources": ["127.0.0.1"]}, "dialout": dialout,
    }  # fmt: skip


async def test_dial_out_is_off_by_default(
    make_node: NodeFactory, moderated_prosody: ProsodyServer
) -> None:
    async with make_node(), owner(moderated_prosody) as alice:
        reply = await command(alice, "!dial 4930123456")
        assert reply.body == "Dial-out is not enabled on this service."


async def test_the_dial_plan_refuses_every_trick(
    make_node: NodeFactory, moderated_prosody: ProsodyServer
) -> None:
    trap = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    trap.bind(("127.0.0.1", 0))
    trap.setblocking(False)
    port = trap.getsockname()[1]
    sip = _sip(enabled=True, number_patterns=[r"49[0-9]{8}"], trunk_domain="trunk.example",
               domains=["partner.example"], proxy=f"sip:127.0.0.1:{port}", per_room=1)  # fmt: skip
    tricks = [
        "01144123456789",  # an international number outside the plan
        "900123",
        f"sip:x@127.0.0.1:{port}",  # IP literal and port: a port scan
        "sip:x@partner.example:5061",
        "sip:x@partner.example;maddr=127.0.0.1",
        "sip:x@partner.example;transport=tcp",
        "sip:x@partner.example?Route=%3Csip:127.0.0.1%3E",
        "sip:x@intranet.example",
        f"sip:{ROOM}@127.0.0.1",  # our own rooms
        "sip:4930123456@127.0.0.1",
    ]
    try:
        # eleven commands in a row: above the per-occupant command rate, which is not under test
        quick = {"limits": {"command_burst": 20}}
        async with make_node(sip=sip, xmpp=quick), owner(moderated_prosody) as alice:
            for target in tricks:
                reply = await command(alice, f"!dial {target}")
                refusals = ("does not call", "own conferences", "neither a sip: URI")
                assert any(r in reply.body for r in refusals), (target, reply.body)
            linked = await command(alice, "!unlink")
            assert "Unlinked" in linked.body
            reply = await command(alice, f"!link sip:x@127.0.0.1:{port}")
            assert "does not call that address" in reply.body
            try:
                data = trap.recv(65535)
            except BlockingIOError:
                data = b""
            assert data == b"", "a refused target reached the network"
    finally:
        trap.close()


async def test_a_name_that_resolves_inside_is_refused(
    make_node: NodeFactory, moderated_prosody: ProsodyServer
) -> None:
    """With no trunk proxy, the target's name is resolved first: 'localhost' (or any name
    an attacker points at 10/8) is the operator's own network."""
    sip = _sip(enabled=True, domains=["localhost"])
    async with make_node(sip=sip), owner(moderated_prosody) as alice:
        reply = await command(alice, "!dial sip:admin@localhost")
        assert reply.body == "This service does not call that address."
