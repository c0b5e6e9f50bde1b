"""XML entity bombs and external entities against every XML parser on our paths:

* ``bridge.protocol.conference_info.parse`` (defusedxml, DTDs refused);
* the component's inbound stream (slixmpp on expat) fed by a hostile "XMPP server";
* Prosody's c2s stream, in front of the room, fed by a hostile client: the bridge is
  never reached and keeps serving.
Room-config forms (``bridge.xmpp.forms``) parse no XML themselves: slixmpp hands them values
from the same stream parser tested here. Every bomb ends in a clear error, fast, in bounded
memory (the process would be killed long before a real billion-laughs expansion finished)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from bridge.config import XmppSettings
from bridge.devstack.prosody import ProsodyServer
from bridge.protocol.conference_info import ConferenceInfoError, parse
from bridge.xmpp.component import BridgeComponent, XmppUnavailable
from tests.badinput.sip_corpus import BOMB
from tests.e2e.conftest import NodeFactory
from tests.faults.conftest import MUC, WAIT, dial, moderator

NS = "urn:ietf:params:xml:ns:conference-info"
QUADRATIC = (
    f'<?xml version="1.0"?><!DOCTYPE c [<!ENTITY a "{"A" * 50000}">]>'
    f'<conference-info xmlns="{NS}" entity="sip:x@y">{"&a;" * 5000}</conference-info>'
)
EXTERNAL = (
    '<?xml version="1.0"?><!DOCTYPE c [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    f'<conference-info xmlns="{NS}" entity="sip:x@y"><users>&e;</users></conference-info>'
)
PARAMETER = (
    '<?xml version="1.0"?><!DOCTYPE c [<!ENTITY % p SYSTEM "http://127.0.0.1:1/x.dtd"> %p;]>'
    f'<conference-info xmlns="{NS}" entity="sip:x@y"/>'
)
DTD_ONLY = f'<!DOCTYPE conference-info><conference-info xmlns="{NS}" entity="sip:x@y"/>'
XINCLUDE = (
    f'<conference-info xmlns="{NS}" xmlns:xi="http://www.w3.org/2001/XInclude" '
    'entity="sip:x@y"><xi:include href="file:///etc/passwd" parse="text"/></conference-info>'
)
BOMBS = {"billion laughs": BOMB, "quadratic blowup": QUADRATIC, "external entity": EXTERNAL,
         "parameter entity": PARAMETER, "doctype": DTD_ONLY}  # fmt: skip


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_conference_info_parser_refuses_bombs(name: str) -> None:
    with pytest.raises(ConferenceInfoError) as error:
        parse(BOMBS[name].encode())
    assert "refused" in str(error.value) or "not well-formed" in str(error.value)


def test_conference_info_xinclude_is_not_processed() -> None:
    doc = parse(XINCLUDE.encode())  # unknown elements are ignored, never fetched
    assert doc.users is None


def test_conference_info_oversize_is_refused_before_parsing() -> None:
    huge = f'<conference-info xmlns="{NS}" entity="sip:x@y">'.encode() + b" " * 10**6
    with pytest.raises(ConferenceInfoError, match="exceeds"):
        parse(huge)


async def hostile_server(prolog: bytes) -> AsyncIterator[int]:
    """A TCP "XMPP server" that answers the component's stream header with ``prolog``."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)
        writer.write(prolog)
        await writer.drain()
        await reader.read(4096)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()


STREAM = (
    b"<stream:stream xmlns='jabber:component:accept' "
    b"xmlns:stream='http://etherx.jabber.org/streams' from='bridge.localhost' id='x'>"
)


@pytest.mark.parametrize("name", ["billion laughs", "quadratic blowup", "external entity"])
async def test_component_survives_a_hostile_server_stream(name: str) -> None:
    body = BOMBS[name].split("]>", 1)
    prolog = (body[0] + "]>").encode() + STREAM + b"<handshake>&lol9;&a;&e;</handshake>"
    async for port in hostile_server(prolog):
        component = BridgeComponent(
            XmppSettings(secret="s", port=port, connect_timeout=2.0)  # type: ignore[arg-type]
        )
        with pytest.raises(XmppUnavailable):
            await component.connect_and_wait()
        await component.close()


async def test_prosody_refuses_a_bomb_from_a_client_and_the_bridge_keeps_serving(
    make_node: NodeFactory, moderated_prosody: ProsodyServer
) -> None:
    async with make_node() as node, moderator(moderated_prosody) as alice:
        carl, status = await dial(node.pool.front_port, "carl", "Carl Caller")
        assert status == 200
        await alice.wait_for(lambda: "Carl Caller" in alice.occupants(MUC))
        for name in ("billion laughs", "external entity"):
            head = BOMBS[name].split("]>", 1)[0] + "]>"
            answer = await asyncio.to_thread(_raw_c2s, moderated_prosody.c2s_port, head)
            assert b"restricted-xml" in answer or b"not-well-formed" in answer or answer == b""
        await alice.say(MUC, "after the bombs")
        note = await asyncio.to_thread(carl.wait_request, "MESSAGE", WAIT)
        assert "after the bombs" in note.body
        await asyncio.to_thread(carl.bye)
        carl.close()


def _raw_c2s(port: int, prolog: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(
            prolog.encode() + b"<stream:stream to='localhost' xmlns='jabber:client' "
            b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>&lol9;"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data
