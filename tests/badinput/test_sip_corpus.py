"""A corpus of malformed SIP (``sip_corpus.CORPUS``) fired at a running node, then hostile
in-dialog MESSAGEs from a real caller. Every input gets its error response (or, where pjsip
cannot even frame it, is dropped), no worker or supervisor dies, and the node still serves
calls and relays text afterwards. The worker-level cases already in tests/sip (broken SDP,
huge headers, garbage) are not repeated there; this corpus is the wider RFC 4475-style set."""

from __future__ import annotations

import asyncio
import re
import secrets
import socket

from bridge.devstack.prosody import ProsodyServer
from tests.badinput.sip_corpus import CORPUS, Case
from tests.e2e.conftest import NodeFactory
from tests.faults.conftest import MUC, WAIT, dial, moderator

FINAL = re.compile(rb"^SIP/2\.0 ([2-6]\d\d) ")
CALL_ID = re.compile(rb"\r\n(?:Call-ID|i)[ \t]*:[ \t]*([^\r]*)", re.IGNORECASE)


def fire(port: int, cases: tuple[Case, ...]) -> dict[str, list[int]]:
    """Send every case (fresh Call-ID each), then collect final responses by Call-ID until
    the socket has been quiet for a while (pjsip retransmits: codes may repeat)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    me = sock.getsockname()[1]
    names: dict[str, str] = {}
    for i, case in enumerate(cases):
        call_id = f"corpus{i}-{secrets.token_hex(4)}"
        names[call_id] = case.name
        data = case.datagram if isinstance(case.datagram, bytes) else case.datagram.encode()
        for key, value in ((b"{port}", port), (b"{me}", me), (b"{callid}", call_id),
                           (b"{branch}", "z9hG4bK" + secrets.token_hex(6))):  # fmt: skip
            data = data.replace(key, str(value).encode())
        sock.sendto(data, ("127.0.0.1", port))
    got: dict[str, list[int]] = {name: [] for name in names.values()}
    sock.settimeout(3.0)
    try:
        while True:
            data, _ = sock.recvfrom(65535)
            final, call_id = FINAL.match(data), CALL_ID.search(data)
            if final and call_id and call_id.group(1).decode() in names:
                got[names[call_id.group(1).decode()]].append(int(final.group(1)))
    except TimeoutError:
        pass
    finally:
        sock.close()
    return got


async def test_malformed_sip_corpus_against_a_running_node(
    make_node: NodeFactory, moderated_prosody: ProsodyServer
) -> None:
    async with make_node() as node, moderator(moderated_prosody) as alice:
        pids = node.pool.worker_pids()
        got = await asyncio.to_thread(fire, node.pool.front_port, CORPUS)
        wrong = {}
        for case in CORPUS:
            codes = set(got[case.name])
            if case.expect is None:
                if codes and not codes <= set(range(400, 700)):
                    wrong[case.name] = sorted(codes)
            elif not codes or not codes <= case.expect:
                wrong[case.name] = sorted(codes)
        assert not wrong, f"unexpected answers (case → codes): {wrong}"
        # nothing died, nothing leaked into the room or the pool
        assert node.pool.worker_pids() == pids and all(p.alive for p in node.pool.slots())
        assert not node.pool.legs()
        assert set(alice.occupants(MUC)) == {"Alice", "bridge"}
        assert all(not task.done() for task in node._tasks), "a supervisor task died"

        # the node still serves: a normal caller joins and chats both ways
        carl, status = await dial(node.pool.front_port, "carl", "Carl Caller")
        assert status == 200
        await alice.wait_for(lambda: "Carl Caller" in alice.occupants(MUC))
        await asyncio.to_thread(carl.in_dialog, "MESSAGE", body="still fine",
                                ctype="text/plain")  # fmt: skip
        await alice.next_message(lambda m: m.body == "still fine", WAIT)
        await asyncio.to_thread(carl.bye)
        carl.close()


async def test_hostile_in_dialog_messages_get_clear_answers(
    make_node: NodeFactory, moderated_prosody: ProsodyServer
) -> None:
    async with make_node() as node, moderator(moderated_prosody) as alice:
        carl, status = await dial(node.pool.front_port, "carl", "Carl Caller")
        assert status == 200
        await alice.wait_for(lambda: "Carl Caller" in alice.occupants(MUC))

        async def send(body: str, ctype: str = "text/plain") -> int:
            reply = await asyncio.to_thread(carl.in_dialog, "MESSAGE", body=body, ctype=ctype)
            return reply.status

        # markup and XML are refused at the SIP layer (415), nothing reaches the room
        assert await send("<b>bold</b>", "text/html") == 415
        assert await send("<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>",
                          "application/xml") == 415  # fmt: skip
        # control characters: relayed without the characters XML cannot carry
        assert await send("ring\x07 the\x00 bell\x1b[31m") == 200
        ctrl = await alice.next_message(lambda m: m.body.startswith("ring"), WAIT)
        assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f]", ctrl.body)
        # an oversize message is refused with a notice to the caller, not cut silently
        # (3000: pjsip truncates UDP datagrams over 4000 bytes, see docs/reliability.md)
        assert await send("x" * 3000) == 200
        notice = await asyncio.to_thread(carl.wait_request, "MESSAGE", WAIT)
        assert "not delivered" in notice.body and "3000" in notice.body
        # a flood: the rate limit applies and the caller is told once
        for i in range(12):
            await send(f"flood {i}")

        def told() -> bool:
            return any("too fast" in m.body for m in carl.received if m.method == "MESSAGE")

        while not told():  # the notice may arrive while a send waits for its 200
            await asyncio.to_thread(carl.recv, 0.5)
        await alice.next_message(lambda m: m.body.startswith("flood"), WAIT)
        flood = [m for m in alice.messages if m.body.startswith("flood")]
        assert 0 < len(flood) < 12
        assert not [m for m in alice.messages if "x" * 100 in m.body or "<b>" in m.body]
        await asyncio.to_thread(carl.bye)
        carl.close()
