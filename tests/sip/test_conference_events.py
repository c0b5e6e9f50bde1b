"""RFC 4575 conference event package on a real pjsua2 endpoint, driven by a raw UDP subscriber.

One pjsua2 endpoint (its own thread, as in the worker) serves the whole module; each test uses
its own rooms, so tests do not see each other's subscriptions. Waits are bounded safety nets
(a hung test fails), never assertions about speed.
"""

from __future__ import annotations

import itertools
import pickle
import queue
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from lxml import etree

from bridge.config import SipSettings
from bridge.core.admission import RoomDirectory
from bridge.devstack.ports import free_udp_tcp_port
from bridge.protocol.conference_info import (
    AudioLeg,
    ChatPresence,
    ConferenceInfo,
    Participant,
    RoomView,
    apply_partial,
    conference_from_room,
    parse,
)

pj = pytest.importorskip("pjsua2")

SCHEMA = etree.XMLSchema(etree.parse(str(Path(__file__).parents[1] /
                                         "protocol/schemas/conference-info.xsd")))
WAIT = 15.0  # safety net for a hung peer, not a speed requirement


# ---- the pjsua2 side -----------------------------------------------------------------------


class PjsuaHost:
    """A minimal pjsua2 endpoint on its own thread, the way the SIP worker runs it."""

    def __init__(self, install: Callable[[Any, Callable[[str], ConferenceInfo | None]], Any]):
        self.port = free_udp_tcp_port()
        self.rooms: dict[str, ConferenceInfo] = {}
        self.service: Any = None
        self._install = install
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pjsua2", daemon=True)

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(WAIT), "pjsua2 thread did not start"
        if self._error:
            raise self._error

    def _run(self) -> None:
        ep = pj.Endpoint()
        try:
            ep.libCreate()
            cfg = pj.EpConfig()
            cfg.uaConfig.threadCnt = 0
            cfg.uaConfig.mainThreadOnly = True
            cfg.logConfig.level = 1
            cfg.logConfig.consoleLevel = 1
            ep.libInit(cfg)
            ep.audDevManager().setNullDev()
            tc = pj.TransportConfig()
            tc.port = self.port
            tc.boundAddress = "127.0.0.1"
            ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
            ep.libStart()
            acc_cfg = pj.AccountConfig()  # the worker has an account; pjsua needs one
            acc_cfg.idUri = f"sip:bridge@127.0.0.1:{self.port}"
            self._account = pj.Account()
            self._account.create(acc_cfg, True)
            self.service = self._install(ep, self.rooms.get)
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        while not self._stop.is_set():
            ep.libHandleEvents(10)
            while True:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                job()
        try:
            if self.service is not None and getattr(self.service, "enabled", False):
                self.service.shutdown()
                for _ in range(20):
                    ep.libHandleEvents(10)
        finally:
            del self._account
            ep.libDestroy()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the pjsua2 thread and return its result."""
        done: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()

        def job() -> None:
            try:
                done.put((True, fn()))
            except BaseException as exc:
                done.put((False, exc))

        self._jobs.put(job)
        ok, value = done.get(timeout=WAIT)
        if not ok:
            raise value
        return value

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(WAIT)


# ---- the subscriber side -------------------------------------------------------------------


@dataclass
class SipMessage:
    start: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def is_request(self) -> bool:
        return not self.start.startswith("SIP/2.0")

    @property
    def status(self) -> int:
        return int(self.start.split(" ")[1])

    @property
    def method(self) -> str:
        return self.start.split(" ")[0] if self.is_request else self.get("cseq").split()[1]

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def get(self, name: str) -> str:
        values = self.get_all(name)
        assert values, f"no {name} in {self.start}"
        return values[0]


COMPACT = {"v": "Via", "f": "From", "t": "To", "i": "Call-ID", "m": "Contact", "o": "Event",
           "l": "Content-Length", "c": "Content-Type", "u": "Allow-Events"}


def parse_sip(data: bytes) -> SipMessage:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip()
        headers.append((COMPACT.get(name.lower(), name) if len(name) == 1 else name,
                        value.strip()))
    msg = SipMessage(lines[0], headers, body)
    length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
    msg.body = body[:length]
    return msg


def tag_of(value: str) -> str | None:
    m = re.search(r";\s*tag=([^;>\s]+)", value)
    return m.group(1) if m else None


@dataclass
class Dialog:
    room: str
    call_id: str
    from_tag: str
    cseq: int = 1
    remote_tag: str | None = None
    remote_target: str | None = None
    responses: list[SipMessage] = field(default_factory=list)
    notifies: list[SipMessage] = field(default_factory=list)

    def documents(self) -> list[bytes]:
        return [n.body for n in self.notifies if n.body]


class Subscriber:
    """A SIP subscriber speaking raw UDP: sends SUBSCRIBEs, answers NOTIFYs with 200."""

    def __init__(self, bridge_port: int, host: str = "127.0.0.1") -> None:
        self.host = host  # another 127.x address is another source
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.bridge = ("127.0.0.1", bridge_port)
        self.dialogs: dict[str, Dialog] = {}
        self.notify_answer = 200

    def close(self) -> None:
        self.sock.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendto(data, self.bridge)

    def request(self, dlg: Dialog, *, expires: int | None = 600, event: str | None = "conference",
                extra: str = "", body: bytes = b"", uri: str | None = None) -> None:
        target = uri or dlg.remote_target or f"sip:{dlg.room}@127.0.0.1:{self.bridge[1]}"
        to = f"<sip:{dlg.room}@127.0.0.1:{self.bridge[1]}>"
        if dlg.remote_tag:
            to += f";tag={dlg.remote_tag}"
        lines = [
            f"SUBSCRIBE {target} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};rport;branch=z9hG4bK-{uuid.uuid4().hex}",
            "Max-Forwards: 70",
            f"From: <sip:watcher@{self.host}:{self.port}>;tag={dlg.from_tag}",
            f"To: {to}",
            f"Call-ID: {dlg.call_id}",
            f"CSeq: {dlg.cseq} SUBSCRIBE",
            f"Contact: <sip:watcher@{self.host}:{self.port}>",
            "Accept: application/conference-info+xml",
        ]
        dlg.cseq += 1
        if event is not None:
            lines.append(f"Event: {event}")
        if expires is not None:
            lines.append(f"Expires: {expires}")
        if extra:
            lines.append(extra)
        lines.append(f"Content-Length: {len(body)}")
        self.send_raw(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    def new_dialog(self, room: str) -> Dialog:
        dlg = Dialog(room, f"{uuid.uuid4().hex}@watcher", uuid.uuid4().hex[:10])
        self.dialogs[dlg.call_id] = dlg
        return dlg

    def _answer(self, msg: SipMessage) -> None:
        lines = ["SIP/2.0 200 OK" if self.notify_answer == 200
                 else f"SIP/2.0 {self.notify_answer} Nope"]
        lines += [f"Via: {v}" for v in msg.get_all("Via")]
        lines += [f"From: {msg.get('From')}", f"To: {msg.get('To')}",
                  f"Call-ID: {msg.get('Call-ID')}", f"CSeq: {msg.get('CSeq')}",
                  "Content-Length: 0"]
        self.send_raw(("\r\n".join(lines) + "\r\n\r\n").encode())

    def pump(self, until: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        """Receive (answering NOTIFYs) until ``until()`` holds; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"gave up waiting for {what}")
            self.sock.settimeout(min(left, 0.5))
            try:
                data, _ = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            msg = parse_sip(data)
            dlg = self.dialogs.get(msg.get("Call-ID"))
            if dlg is None:
                continue
            if msg.is_request:
                assert msg.method == "NOTIFY", msg.start
                self._answer(msg)
                if not any(n.get("CSeq") == msg.get("CSeq") for n in dlg.notifies):
                    dlg.notifies.append(msg)  # ignore retransmissions
                dlg.remote_tag = dlg.remote_tag or tag_of(msg.get("From"))
            else:
                dlg.responses.append(msg)
                if 200 <= msg.status < 300:
                    dlg.remote_tag = tag_of(msg.get("To"))
                    contact = msg.get_all("Contact")
                    if contact and dlg.remote_target is None:
                        dlg.remote_target = contact[0].split("<")[1].split(">")[0]

    def subscribe(self, room: str, **kw: Any) -> Dialog:
        dlg = self.new_dialog(room)
        self.request(dlg, **kw)
        self.pump(lambda: bool(dlg.responses) and (dlg.responses[-1].status >= 300
                                                   or bool(dlg.notifies)),
                  f"answer to SUBSCRIBE {room}")
        return dlg


# ---- fixtures ------------------------------------------------------------------------------


def _install(ep: Any, lookup: Callable[[str], ConferenceInfo | None]) -> Any:
    from bridge.sip.evsub import ConferenceEventService

    return ConferenceEventService.install(ep, lookup)


@pytest.fixture(scope="module")
def host() -> Iterator[PjsuaHost]:
    h = PjsuaHost(_install)
    h.start()
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture
def subscriber(host: PjsuaHost) -> Iterator[Subscriber]:
    s = Subscriber(host.port)
    try:
        yield s
    finally:
        s.close()


_rooms = itertools.count()


def room_view(name: str, *people: Participant, subject: str = "Standup") -> RoomView:
    return RoomView(focus_uri=f"sip:{name}@127.0.0.1", room_jid=f"{name}@muc.example",
                    participants=people, subject=subject)


ALICE = Participant("Alice", audio=AudioLeg("sip:alice@example.com"),
                    entity="sip:alice@example.com")
BOB = Participant("Bob", chat=ChatPresence("bob"))


def new_room(host: PjsuaHost, *people: Participant) -> tuple[str, RoomView]:
    name = f"room{next(_rooms)}"
    view = room_view(name, *people)
    host.rooms[name] = conference_from_room(view)
    return name, view


def valid(body: bytes) -> ConferenceInfo:
    SCHEMA.assertValid(etree.fromstring(body))
    return parse(body)


# ---- tests ---------------------------------------------------------------------------------


def test_service_verified_layout_and_is_enabled(host: PjsuaHost) -> None:
    assert host.service.enabled, host.service.problems
    assert host.service.problems == []


def test_subscribe_gets_200_and_full_notify(host: PjsuaHost, subscriber: Subscriber) -> None:
    room, _ = new_room(host, ALICE, BOB)
    dlg = subscriber.subscribe(room)
    ok = dlg.responses[-1]
    assert ok.status == 200
    assert int(ok.get("Expires")) <= 600
    assert ";isfocus" in ok.get("Contact")
    notify = dlg.notifies[0]
    assert notify.get("Event").startswith("conference")
    assert notify.get("Subscription-State").startswith("active")
    assert notify.get("Content-Type") == "application/conference-info+xml"
    assert "conference" in ",".join(notify.get_all("Allow-Events"))
    doc = valid(notify.body)
    assert doc.state.value == "full" and doc.version == 1
    assert doc.entity == f"sip:{room}@127.0.0.1"
    assert {u.entity for u in doc.users or ()} == {"sip:alice@example.com",
                                                   f"xmpp:{room}@muc.example/bob"}


def test_change_sends_partial_then_refresh_full_then_unsubscribe(
        host: PjsuaHost, subscriber: Subscriber) -> None:
    room, _ = new_room(host, ALICE)
    dlg = subscriber.subscribe(room)
    state = valid(dlg.notifies[0].body)

    changed = conference_from_room(room_view(room, ALICE, BOB))
    host.rooms[room] = changed
    host.service.notify_changed(room, changed)
    subscriber.pump(lambda: len(dlg.notifies) >= 2, "partial NOTIFY")
    partial = valid(dlg.notifies[1].body)
    assert partial.state.value == "partial" and partial.version == 2
    assert [u.entity for u in partial.users or ()] == [f"xmpp:{room}@muc.example/bob"]
    state = apply_partial(state, partial)
    assert {u.entity for u in state.users or ()} == {"sip:alice@example.com",
                                                     f"xmpp:{room}@muc.example/bob"}

    subscriber.request(dlg, expires=300)  # in-dialog refresh
    subscriber.pump(lambda: len(dlg.notifies) >= 3 and len(dlg.responses) >= 2, "refresh")
    assert dlg.responses[-1].status == 200
    full = valid(dlg.notifies[2].body)
    assert full.state.value == "full" and full.version == 3

    subscriber.request(dlg, expires=0)  # un-SUBSCRIBE
    subscriber.pump(lambda: len(dlg.notifies) >= 4 and len(dlg.responses) >= 3, "unsubscribe")
    assert dlg.responses[-1].status == 200
    assert dlg.notifies[3].get("Subscription-State").startswith("terminated")
    subscriber.pump(lambda: host.service.subscription_count(room) == 0, "subscription gone")


def test_too_long_expires_is_shortened(host: PjsuaHost, subscriber: Subscriber) -> None:
    room, _ = new_room(host, ALICE)
    dlg = subscriber.subscribe(room, expires=99999999)
    assert dlg.responses[-1].status == 200
    assert int(dlg.responses[-1].get("Expires")) == 3600
    assert "expires=" in dlg.notifies[0].get("Subscription-State")
    assert int(dlg.notifies[0].get("Subscription-State").split("expires=")[1]) <= 3600


def test_expiry_is_handled_by_pjsip(host: PjsuaHost, subscriber: Subscriber) -> None:
    """No refresh: pjsip's timer ends the subscription with a terminated NOTIFY."""
    room, _ = new_room(host, ALICE)
    dlg = subscriber.subscribe(room, expires=1)
    assert int(dlg.responses[-1].get("Expires")) == 1
    subscriber.pump(lambda: len(dlg.notifies) >= 2, "expiry NOTIFY")
    state = dlg.notifies[1].get("Subscription-State")
    assert state.startswith("terminated") and "timeout" in state
    subscriber.pump(lambda: host.service.subscription_count(room) == 0, "expired sub gone")


def test_subscriber_rejecting_notify_ends_its_subscription(host: PjsuaHost,
                                                         subscriber: Subscriber) -> None:
    """RFC 6665 §4.2.2: a 481 to a NOTIFY ends the subscription (pjsip does it)."""
    room, _ = new_room(host, ALICE)
    subscriber.subscribe(room)
    assert host.service.subscription_count(room) == 1
    subscriber.notify_answer = 481
    host.service.notify_changed(room, conference_from_room(room_view(room, ALICE, BOB)))
    subscriber.pump(lambda: host.service.subscription_count(room) == 0, "481 ends it")


class FakeHookContext:
    """The part of the worker's HookContext that the hook uses."""

    def __init__(self, endpoint: Any) -> None:
        self.endpoint = endpoint
        self.handlers: dict[type, Callable[[Any], None]] = {}
        # the subscriber here is on 127.0.0.1: a trusted source (policy: test_abuse_limits)
        self.spec = SimpleNamespace(sip=SipSettings(limits={"trusted_sources": ["127.0.0.1"]}))
        self.directory = RoomDirectory()

    def callers_of(self, room: str) -> frozenset[str]:
        return frozenset()

    def verified_subscriber(self, call_id: str) -> bool:
        return False

    def on_control(self, kind: type, handler: Callable[[Any], None]) -> None:
        self.handlers[kind] = handler


def hook_scenario() -> None:
    """Run in a subprocess: pjsua allows one endpoint per process."""
    from bridge.sip.evsub import ConferenceInfoUpdate, worker_hook

    contexts: list[FakeHookContext] = []

    def install(ep: Any, _lookup: Any) -> Any:
        contexts.append(FakeHookContext(ep))
        return worker_hook(contexts[0])

    hook_host = PjsuaHost(install)
    hook_host.start()
    sub = Subscriber(hook_host.port)
    try:
        handler = contexts[0].handlers[ConferenceInfoUpdate]
        assert sub.subscribe("pushed").responses[-1].status == 404  # nothing pushed yet
        update = pickle.loads(pickle.dumps(  # crosses the worker pipe
            ConferenceInfoUpdate("pushed", conference_from_room(room_view("pushed", ALICE)))))
        hook_host.call(lambda: handler(update))
        dlg = sub.subscribe("pushed")
        assert dlg.responses[-1].status == 200 and valid(dlg.notifies[0].body).version == 1
        bigger = conference_from_room(room_view("pushed", ALICE, BOB))
        hook_host.call(lambda: handler(ConferenceInfoUpdate("pushed", bigger)))
        sub.pump(lambda: len(dlg.notifies) >= 2, "partial via hook")
        assert valid(dlg.notifies[1].body).state.value == "partial"
        hook_host.call(lambda: handler(ConferenceInfoUpdate("pushed", None)))
        sub.pump(lambda: len(dlg.notifies) >= 3, "end via hook")
        assert "noresource" in dlg.notifies[2].get("Subscription-State")
        assert sub.subscribe("pushed").responses[-1].status == 404
    finally:
        sub.close()
        hook_host.stop()


def test_worker_hook_serves_rooms_pushed_by_the_supervisor() -> None:
    here = Path(__file__).parent
    code = (f"import sys; sys.path[:0] = [{str(here.parents[1])!r}, {str(here)!r}]\n"
            "import test_conference_events as t; t.hook_scenario(); print('HOOK OK')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0 and "HOOK OK" in out.stdout, (out.stdout + out.stderr)[-3000:]


def test_unknown_room_gets_404(host: PjsuaHost, subscriber: Subscriber) -> None:
    dlg = subscriber.subscribe("no-such-room")
    assert dlg.responses[-1].status == 404
    assert not dlg.notifies


def test_fetch_with_expires_zero_gets_full_state_and_ends(host: PjsuaHost,
                                                         subscriber: Subscriber) -> None:
    room, _ = new_room(host, ALICE)
    dlg = subscriber.subscribe(room, expires=0)
    assert dlg.responses[-1].status == 200
    subscriber.pump(lambda: bool(dlg.notifies), "fetch NOTIFY")
    assert dlg.notifies[0].get("Subscription-State").startswith("terminated")
    assert valid(dlg.notifies[0].body).version == 1
    subscriber.pump(lambda: host.service.subscription_count(room) == 0, "fetch ends")


def test_conference_end_terminates_its_subscriptions_only(host: PjsuaHost,
                                                         subscriber: Subscriber) -> None:
    ending, _ = new_room(host, ALICE)
    staying, _ = new_room(host, ALICE)
    a, b = subscriber.subscribe(ending), subscriber.subscribe(staying)
    host.service.conference_ended(ending)
    subscriber.pump(lambda: len(a.notifies) >= 2, "terminating NOTIFY")
    state = a.notifies[1].get("Subscription-State")
    assert state.startswith("terminated") and "noresource" in state
    subscriber.pump(lambda: host.service.subscription_count(ending) == 0, "room's subs gone")
    assert host.service.subscription_count(staying) == 1
    assert len(b.notifies) == 1


def test_hundred_subscribers_all_get_their_notifies(host: PjsuaHost,
                                                   subscriber: Subscriber) -> None:
    room, _ = new_room(host, ALICE)
    dialogs = [subscriber.new_dialog(room) for _ in range(100)]
    for dlg in dialogs:
        subscriber.request(dlg)
    subscriber.pump(lambda: all(d.notifies for d in dialogs), "100 initial NOTIFYs", 60)
    assert host.service.subscription_count(room) == 100
    changed = conference_from_room(room_view(room, ALICE, BOB))
    host.service.notify_changed(room, changed)
    subscriber.pump(lambda: all(len(d.notifies) >= 2 for d in dialogs), "100 partials", 60)
    for dlg in dialogs:
        assert dlg.responses[0].status == 200
        partial = valid(dlg.notifies[1].body)
        assert partial.version == 2 and partial.state.value == "partial"
    host.service.conference_ended(room)
    subscriber.pump(lambda: host.service.subscription_count(room) == 0, "all ended", 60)


def _raw_subscribe(room: str, port: int, me: int, *, headers: str, body: bytes = b"",
                   clen: int | None = None) -> bytes:
    return (f"SUBSCRIBE sip:{room}@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-{uuid.uuid4().hex}\r\n"
            f"From: <sip:w@127.0.0.1:{me}>;tag=t1\r\nTo: <sip:{room}@127.0.0.1:{port}>\r\n"
            f"Call-ID: {uuid.uuid4().hex}\r\nCSeq: 1 SUBSCRIBE\r\n"
            f"Contact: <sip:w@127.0.0.1:{me}>\r\nMax-Forwards: 70\r\n{headers}"
            f"Content-Length: {len(body) if clen is None else clen}\r\n\r\n").encode() + body


def _first_response(sub: Subscriber, data: bytes) -> SipMessage | None:
    """Send ``data``; the first response to it, or ``None`` if the bridge dropped it."""
    call_id = parse_sip(data).get("Call-ID")
    sub.send_raw(data)
    deadline = time.monotonic() + 3  # a dropped request is a valid outcome for garbage
    while time.monotonic() < deadline:
        sub.sock.settimeout(0.5)
        try:
            got = parse_sip(sub.sock.recvfrom(65536)[0])
        except TimeoutError:
            continue
        if not got.is_request and got.get_all("Call-ID") == [call_id] and got.status >= 200:
            return got
    return None


@pytest.mark.parametrize("headers, body, expected", [
    # pjsip's parser drops a request whose Expires does not parse, before any module sees it
    ("Event: conference\r\nExpires: soon\r\n", b"", {None, 400}),
    ("Event: conference\r\nContent-Type: text/plain\r\n", b"x" * 2000, {413}),
    ("Event: conference\r\nAccept: text/plain\r\n", b"", {406}),
    ("Event: conference;id=1\r\nExpires: 60\r\n", b"", {200}),
    ("o: conference\r\nExpires: 60\r\n", b"", {200}),
    ("Event: dialog\r\n", b"", {489}),
    ("", b"", {400, 489}),  # no Event: not ours; pjsua refuses it
])
def test_malformed_subscribe_gets_an_error_and_nothing_breaks(
        host: PjsuaHost, subscriber: Subscriber, headers: str, body: bytes,
        expected: set[int | None]) -> None:
    room, _ = new_room(host, ALICE)
    resp = _first_response(subscriber, _raw_subscribe(room, host.port, subscriber.port,
                                                      headers=headers, body=body))
    assert (resp.status if resp else None) in expected, resp and resp.start
    # The endpoint still serves a normal subscriber afterwards.
    assert subscriber.subscribe(room).responses[-1].status == 200


def test_oversized_datagram_and_garbage_do_not_crash(host: PjsuaHost,
                                                     subscriber: Subscriber) -> None:
    room, _ = new_room(host, ALICE)
    huge = _raw_subscribe(room, host.port, subscriber.port, headers="Event: conference\r\n",
                          body=b"<x/>" * 15000)  # 60 kB: beyond pjsip's packet buffer
    subscriber.send_raw(huge)
    subscriber.send_raw(b"\x00\xff garbage SUBSCRIBE\r\n\r\n")
    subscriber.send_raw(_raw_subscribe(room, host.port, subscriber.port,
                                       headers="Event: conference\r\n", clen=5000))
    assert subscriber.subscribe(room).responses[-1].status == 200


def test_notify_changed_is_thread_safe_and_coalesces(host: PjsuaHost,
                                                     subscriber: Subscriber) -> None:
    room, _ = new_room(host, ALICE)
    dlg = subscriber.subscribe(room)
    views = [conference_from_room(room_view(room, ALICE, subject=f"s{i}")) for i in range(50)]
    threads = [threading.Thread(target=host.service.notify_changed, args=(room, v))
               for v in views]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = conference_from_room(room_view(room, ALICE, subject="final"))
    host.service.notify_changed(room, final)
    state = valid(dlg.notifies[0].body)

    def converged() -> bool:
        nonlocal state
        for n in dlg.notifies[1:]:
            state = apply_partial(state, parse(n.body))
        del dlg.notifies[1:]
        return state.description is not None and state.description.subject == "final"

    subscriber.pump(converged, "final subject")
    with pytest.raises(RuntimeError, match="thread"):
        host.service.process_pending()  # not on the pjsua2 thread


LAYOUT_MISMATCH = """
import dataclasses, socket, sys
sys.path.insert(0, {root!r})
sys.path.insert(0, {tests!r})
from test_conference_events import PjsuaHost, Subscriber
from bridge.sip import evsub
from bridge.protocol.conference_info import RoomView, conference_from_room
bad = dataclasses.replace(evsub.PINNED, rdata_cid=evsub.PINNED.rdata_cid + 8,
                          rdata_msg=evsub.PINNED.rdata_msg + 8, tdata_msg=400)
host = PjsuaHost(lambda ep, lookup: evsub.ConferenceEventService.install(ep, lookup,
                                                                        layout=bad))
host.start()
host.rooms["r"] = conference_from_room(RoomView("sip:r@127.0.0.1", "r@muc.example"))
sub = Subscriber(host.port)
dlg = sub.subscribe("r")
print("ENABLED", host.service.enabled)
print("PROBLEMS", host.service.problems)
print("STATUS", dlg.responses[-1].status)
host.stop()
"""


def test_layout_mismatch_disables_package_loudly_and_pjsua_answers_489() -> None:
    """A build whose structs differ: loud error, no package, 489 — and no crash."""
    here = Path(__file__).parent
    code = LAYOUT_MISMATCH.format(root=str(here.parents[1]), tests=str(here))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ENABLED False" in out.stdout
    assert "STATUS 489" in out.stdout
    assert "rx_data.msg_info.cid" in out.stdout and "tx_data.msg" in out.stdout
    assert "conference_events.disabled" in out.stdout + out.stderr
