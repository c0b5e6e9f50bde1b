"""Issue 19: SIP abuse from outside, performed against real workers (raw UDP SIP).

Each source is a distinct loopback address (127.0.0.2, .3, …): the pool fixture trusts
127.0.0.1 only, as a deployment trusts its own PBX.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import PoolHarness
from rawsip import RawUac
from test_conference_events import ALICE, BOB, Subscriber, room_view

from bridge.core.admission import RoomDirectory
from bridge.core.events import DialOutCall, DialProgress, LegJoined, SipMessageReceived
from bridge.devstack.ports import free_udp_tcp_port
from bridge.protocol.conference_info import conference_from_room
from bridge.sip.evsub import ConferenceInfoUpdate


def _joined(room: str) -> Callable[[object], bool]:
    return lambda ev: isinstance(ev, LegJoined) and ev.room == room


def _call(port: int, host: str, room: str, held: list[RawUac]) -> int:
    """INVITE ``room`` from ``host``, following one 302 to a worker; the final status."""
    uac = RawUac(port, bind=host)
    held.append(uac)
    final = uac.invite(room)
    if final.status == 302:
        target = final.get("Contact").strip("<>").rsplit(":", 1)[1].split(";")[0]
        return _call(int(target), host, room, held)
    return final.status


def test_an_invite_flood_from_one_source_is_refused_with_retry_after(
    make_pool: Callable[..., PoolHarness],
) -> None:
    h = make_pool(
        ("demo",), pool_size=1, sip_settings={
            "limits": {"call_rate_burst": 3, "call_rate_per_minute": 6, "calls_per_source": 50},
        },
    )  # fmt: skip
    statuses = []
    for _ in range(6):  # to a room that does not exist: scanning costs tokens too
        uac = RawUac(h.port, bind="127.0.0.2")
        final = uac.invite("nosuchroom")
        statuses.append((final.status, final.get("Retry-After")))
        uac.close()
    assert statuses[:3] == [(404, "")] * 3
    for status, retry in statuses[3:]:
        assert status == 503
        assert 1 <= int(retry) <= 10  # one token every 10 s
    other = RawUac(h.port, bind="127.0.0.3")  # another source is not degraded
    try:
        assert other.invite("demo").status == 200
        h.wait_for(_joined("demo"), label="the other source joined")
        assert other.bye().status == 200
    finally:
        other.close()


def test_per_source_and_per_room_caps(make_pool: Callable[..., PoolHarness]) -> None:
    h = make_pool(
        ("a", "b"), pool_size=2, calls_per_worker=4, retry_after=9,
        sip_settings={"limits": {"calls_per_source": 2, "callers_per_room": 3}},
    )  # fmt: skip
    held: list[RawUac] = []
    try:
        for _ in range(2):
            uac = RawUac(h.port, bind="127.0.0.2")
            held.append(uac)
            assert uac.invite("a").status == 200
            h.wait_for(_joined("a"))
        third = RawUac(h.port, bind="127.0.0.2")  # same source, any room: its cap is node-wide
        held.append(third)
        busy = third.invite("b")
        assert (busy.status, busy.get("Retry-After")) == (486, "9")
        # another source still gets into the same room, until the room is full
        uac = RawUac(h.port, bind="127.0.0.3")
        held.append(uac)
        assert uac.invite("a").status == 200
        h.wait_for(_joined("a"))
        full = RawUac(h.port, bind="127.0.0.4")
        held.append(full)
        refused = full.invite("a")
        assert (refused.status, refused.get("Retry-After")) == (486, "9")
        assert "full" in refused.first_line.lower()
        # … and other rooms are not degraded by a full one
        assert _call(h.port, "127.0.0.4", "b", held) == 200
        h.wait_for(_joined("b"))
    finally:
        for uac in held:
            uac.close()


def test_an_unacked_answer_frees_its_slot_quickly(make_pool: Callable[..., PoolHarness]) -> None:
    h = make_pool(
        ("demo",), pool_size=1, calls_per_worker=1,
        sip_settings={"limits": {"ack_timeout": 1.0, "call_rate_burst": 100}},
    )  # fmt: skip
    silent = RawUac(h.port, bind="127.0.0.2")
    honest = RawUac(h.port, bind="127.0.0.3")
    try:
        assert silent.invite("demo", ack=False).status == 200  # and never ACKs
        deadline = time.monotonic() + 8.0  # pjsip alone would hold the slot for ~32 s
        status = 0
        while time.monotonic() < deadline:
            h.drain(0.5)
            honest.call_id = f"{time.monotonic_ns()}@raw"
            status = honest.invite("demo").status
            if status == 200:
                break
        assert status == 200
        h.wait_for(_joined("demo"), label="the honest caller joined")
    finally:
        silent.close()
        honest.close()


def _tcp_listens(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _udp_answers(port: int) -> bool:
    uac = RawUac(port, bind="127.0.0.1")
    try:
        uac.request("OPTIONS", f"sip:x@127.0.0.1:{port}")
        return uac.recv(1.5) is not None
    finally:
        uac.close()


def test_a_disabled_transport_does_not_listen(make_pool: Callable[..., PoolHarness]) -> None:
    udp_only = make_pool(("demo",), pool_size=1, sip_settings={"transports": ["udp"]})
    assert _udp_answers(udp_only.port)
    assert not _tcp_listens(udp_only.port)
    tcp_only = make_pool(("demo",), pool_size=1, sip_settings={"transports": ["tcp"]})
    assert _tcp_listens(tcp_only.port)
    assert not _udp_answers(tcp_only.port)


def _self_signed(work: Path) -> tuple[Path, Path]:
    cert, key = work / "cert.pem", work / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def _tls_trunk(cert: Path, key: Path) -> tuple[socket.socket, ssl.SSLContext]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(15)
    return server, ctx


def _first_bytes(server: socket.socket, ctx: ssl.SSLContext) -> bytes:
    """What the bridge sends on the first TLS connection (b"" if the handshake failed)."""
    conn, _ = server.accept()
    try:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            tls.settimeout(10)
            return tls.recv(65535)
    except (ssl.SSLError, OSError):
        return b""


@pytest.mark.parametrize("trusted", [False, True])
def test_tls_dial_out_verifies_the_server_certificate(
    make_pool: Callable[..., PoolHarness], tmp_path: Path, trusted: bool
) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = _self_signed(tmp_path)
    server, ctx = _tls_trunk(cert, key)
    trunk = server.getsockname()[1]
    h = make_pool(("demo",), pool_size=1, sip_settings={
        "transports": ["udp", "tcp", "tls"], "tls_certificate": cert, "tls_private_key": key,
        "tls_port": free_udp_tcp_port(),
        "dialout": {"enabled": True, "number_patterns": ["[0-9]{4}"],
                    "trunk_domain": "trunk.example",
                    "proxy": f"sip:localhost:{trunk};transport=tls",
                    "ca_file": cert if trusted else None},
    })  # fmt: skip
    try:
        assert h.pool.dial(DialOutCall("demo", "sip:1234@trunk.example", "tls-check"))
        received = _first_bytes(server, ctx)
        if trusted:  # the set-up works: with the trunk's CA the INVITE goes through
            assert received.startswith(b"INVITE sip:1234@trunk.example")
        else:  # a certificate nobody vouches for: no INVITE, the dial fails
            assert received == b""
            failed = h.wait_for(lambda e: isinstance(e, DialProgress) and e.status == "failed")
            assert isinstance(failed, DialProgress) and failed.reason == "refused"
    finally:
        server.close()


def test_a_dial_out_routed_back_to_us_never_rings_our_own_room(
    make_pool: Callable[..., PoolHarness],
) -> None:
    """A tenant named a room '1234'; another tenant dials 1234 and the trunk routes the
    number back to this bridge: the INVITE is recognised as our own and refused."""
    port = free_udp_tcp_port()
    h = make_pool(("demo", "1234"), pool_size=1, sip_settings={
        "port": port,
        "dialout": {"enabled": True, "number_patterns": ["[0-9]{4}"],
                    "trunk_domain": "trunk.example", "proxy": f"sip:127.0.0.1:{port}"},
    })  # fmt: skip
    assert h.pool.dial(DialOutCall("demo", "sip:1234@trunk.example", "loop"))
    failed = h.wait_for(lambda e: isinstance(e, DialProgress) and e.status == "failed")
    assert isinstance(failed, DialProgress) and failed.reason == "refused"
    assert not [e for _, e in h.seen if isinstance(e, LegJoined) and e.room == "1234"]


# ---- conference events (RFC 4575 SUBSCRIBE) ---------------------------------------------------


def _push_rooms(h: PoolHarness, *names: str) -> None:
    for name in names:
        view = room_view(name, ALICE, BOB)
        h.pool.send_extension(ConferenceInfoUpdate(name, conference_from_room(view)))
    h.drain(0.3)


def _status(sub: Subscriber, room: str) -> tuple[int, bytes]:
    dlg = sub.subscribe(room)
    return dlg.responses[-1].status, (dlg.notifies[0].body if dlg.notifies else b"")


def test_subscribe_policy_and_caps(make_pool: Callable[..., PoolHarness]) -> None:
    directory = RoomDirectory.create(["open", "closed"], public=["open"])
    h = make_pool(("open", "closed"), pool_size=1, directory=directory, sip_settings={
        "limits": {"subscriptions_per_source": 2, "subscriptions_per_room": 3},
    })  # fmt: skip
    _push_rooms(h, "open", "closed")
    outsider = Subscriber(h.port, host="127.0.0.2")
    caller_sub = Subscriber(h.port, host="127.0.0.3")
    other = Subscriber(h.port, host="127.0.0.4")
    late = Subscriber(h.port, host="127.0.0.5")
    caller = RawUac(h.port, bind="127.0.0.3")
    try:
        status, _ = _status(outsider, "closed")  # members-only room: outsiders are refused
        assert status == 403
        status, body = _status(outsider, "open")  # a public room: anyone may watch
        assert status == 200 and b"Alice" in body
        # a caller of the members-only room may watch it, nicks included
        assert caller.invite("closed").status == 200
        h.wait_for(_joined("closed"))
        h.drain(0.3)
        status, body = _status(caller_sub, "closed")
        assert status == 200 and b"Alice" in body and b"Bob" in body
        # caps: per source, then per room
        assert _status(outsider, "open")[0] == 200
        third = outsider.subscribe("open").responses[-1]  # third from one source
        assert third.status == 403 and "your address" in third.start
        assert _status(other, "open")[0] == 200  # another source: the room's third
        fourth = late.subscribe("open").responses[-1]
        assert fourth.status == 403 and "this conference" in fourth.start
    finally:
        for closeable in (outsider, caller_sub, other, late, caller):
            closeable.close()


def test_anyone_may_subscribe_but_outsiders_see_no_nicks_of_members_only_rooms(
    make_pool: Callable[..., PoolHarness],
) -> None:
    directory = RoomDirectory.create(["closed"])
    h = make_pool(("closed",), pool_size=1, directory=directory,
                  sip_settings={"limits": {"subscribe_policy": "anyone"}})  # fmt: skip
    _push_rooms(h, "closed")
    outsider = Subscriber(h.port, host="127.0.0.2")
    try:
        status, body = _status(outsider, "closed")
        assert status == 200 and b"conference-info" in body
        assert b"Alice" not in body and b"Bob" not in body and b"alice@" not in body
    finally:
        outsider.close()


def test_a_message_flood_from_one_source_is_refused(make_pool: Callable[..., PoolHarness]) -> None:
    h = make_pool(("demo",), pool_size=1, sip_settings={
        "limits": {"request_rate_burst": 3, "request_rate_per_minute": 12},
    })  # fmt: skip
    flood = RawUac(h.port, bind="127.0.0.2")
    other = RawUac(h.port, bind="127.0.0.3")
    try:
        answers = []
        for n in range(6):
            flood.room = "demo"
            flood.request("MESSAGE", f"sip:demo@127.0.0.1:{h.port}", body=f"spam {n}",
                          ctype="text/plain")  # fmt: skip
            final = flood.final_response("MESSAGE")
            answers.append((final.status, final.get("Retry-After")))
        # the burst reaches the room rules (an unverified sender with no call: 403, issue 18)
        assert [status for status, _ in answers[:3]] == [403] * 3
        assert answers[3:] == [(503, "5")] * 3  # then 12 a minute: one every 5 s
        assert not [e for e in h.drain(0.5) if isinstance(e, SipMessageReceived)]
        other.room = "demo"
        other.request("MESSAGE", f"sip:demo@127.0.0.1:{h.port}", body="hello",
                      ctype="text/plain")  # fmt: skip
        assert other.final_response("MESSAGE").status == 403  # its own budget: not 503
    finally:
        flood.close()
        other.close()


def test_redirects_never_followed_do_not_exhaust_the_workers(
    make_pool: Callable[..., PoolHarness],
) -> None:
    """The front holds a worker slot for each 302 until the caller arrives there; a source
    that never follows its redirects must not hold more than its own call cap that way."""
    # the front carries calls like any worker: front 1 slot, then two workers of 1 slot
    h = make_pool(("demo",), pool_size=3, calls_per_worker=1,
                  sip_settings={"limits": {"calls_per_source": 2}})  # fmt: skip
    held: list[RawUac] = []
    try:
        first = RawUac(h.port, bind="127.0.0.2")
        held.append(first)
        assert first.invite("demo").status == 200  # the front's own slot
        h.wait_for(_joined("demo"))
        answers = []
        for _ in range(3):  # redirected, never followed
            uac = RawUac(h.port, bind="127.0.0.2")
            held.append(uac)
            answers.append(uac.invite("demo").status)
        assert answers == [302, 486, 486]
        assert _call(h.port, "127.0.0.3", "demo", held) == 200  # a slot is still there
    finally:
        for uac in held:
            uac.close()


def test_an_asserted_subscriber_may_watch_a_members_only_room(
    make_pool: Callable[..., PoolHarness],
) -> None:
    """Issue 18 identities: a subscriber whose identity the trusted PBX (127.0.0.2) asserts
    counts as an insider; the same header from anyone else, or no header, does not."""
    from tests.sip.test_caller_identity import policy

    h = make_pool(("closed",), pool_size=1, directory=RoomDirectory.create(["closed"]),
                  callers=policy(), sip_settings={"limits": {"trusted_sources": []}})  # fmt: skip
    _push_rooms(h, "closed")
    pai = "P-Asserted-Identity: <sip:carol@pbx.example>"
    pbx = Subscriber(h.port, host="127.0.0.2")
    forger = Subscriber(h.port, host="127.0.0.5")
    try:
        assert pbx.subscribe("closed").responses[-1].status == 403  # nobody asserted
        assert forger.subscribe("closed", extra=pai).responses[-1].status == 403
        dlg = pbx.subscribe("closed", extra=pai)
        assert dlg.responses[-1].status == 200
        assert b"Alice" in dlg.notifies[0].body
    finally:
        pbx.close()
        forger.close()
