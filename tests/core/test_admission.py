"""Pure admission decisions, slot accounting and redirect target choice."""

from __future__ import annotations

from bridge.core.admission import (
    Accept,
    Moved,
    PeerSlots,
    Redirect,
    Reject,
    RoomDirectory,
    SlotBook,
    admit,
    normalize_caller,
    redirect_contact,
)
from bridge.sip.sipmsg import via_transport

DIR = RoomDirectory.create(
    ["Lobby", "ops"],
    bans={"lobby": ["sip:Eve@evil.example"], "*": ["sips:mallory@x"]},
    locked=["ops"],
)


def test_unknown_room_is_404_even_when_full() -> None:
    d = admit(DIR, "nope", ["sip:a@b"], has_local_slot=False, is_front=True)
    assert isinstance(d, Reject) and d.status == 404 and d.kind == "unknown_room"
    assert isinstance(admit(DIR, "", ["sip:a@b"], has_local_slot=True), Reject)


def test_banned_caller_403_by_from_or_asserted_identity() -> None:
    d = admit(DIR, "lobby", ["sip:eve@evil.example;transport=tcp"], has_local_slot=True)
    assert d == Reject(403, "Banned from this conference", kind="banned")
    d = admit(DIR, "LOBBY", ["sip:other@x", "sip:eve@evil.example"], has_local_slot=True)
    assert isinstance(d, Reject) and d.status == 403
    d = admit(DIR, "lobby", ["sip:mallory@x"], has_local_slot=True)  # banned everywhere
    assert isinstance(d, Reject) and d.status == 403


def test_locked_room_403_and_open_room_accepted() -> None:
    assert admit(DIR, "ops", ["sip:a@b"], has_local_slot=True) == Reject(
        403, "Conference is locked", kind="locked"
    )
    assert admit(DIR, "lobby", ["sip:a@b"], has_local_slot=True) == Accept()


def test_full_front_redirects_else_503_worker_486() -> None:
    target = Redirect(2, "127.0.0.1", 5070)
    assert admit(DIR, "lobby", ["sip:a@b"], has_local_slot=False, redirect=target) == target
    front = admit(DIR, "lobby", ["sip:a@b"], has_local_slot=False, is_front=True, retry_after=7)
    assert front == Reject(503, "Conference node is full", 7, kind="busy")
    worker = admit(DIR, "lobby", ["sip:a@b"], has_local_slot=False, retry_after=7)
    assert worker == Reject(486, "Busy Here", 7, kind="busy")


def test_normalize_caller() -> None:
    assert normalize_caller("<SIPS:Bob@X;transport=tls>") == "sip:bob@x"
    assert normalize_caller("sip:bob@x:5062") == "sip:bob@x"
    assert normalize_caller("sip:bob@[::1]:5062") == "sip:bob@[::1]"
    assert normalize_caller("tel:+123") == "tel:+123"


def _peers(*busy: int) -> list[PeerSlots]:
    return [PeerSlots(i + 1, "127.0.0.1", 6000 + i, 4, b) for i, b in enumerate(busy)]


def test_slot_book_prefers_most_free_and_holds_redirects() -> None:
    book = SlotBook(hold_s=4.0)
    book.update(_peers(3, 1, 4))
    chosen = book.choose(now=0.0)
    assert chosen is not None and chosen.worker == 2
    for _ in range(3):
        book.hold(2, now=0.0)
    assert book.free(2, now=1.0) == 0
    nxt = book.choose(now=1.0)
    assert nxt is not None and nxt.worker == 1  # the only other free slot
    book.hold(1, now=1.0)
    assert book.choose(now=1.0) is None
    assert book.total_free(now=1.0) == 0
    # worker 2 reports two arrivals: two holds are consumed, one remains
    book.update(_peers(3, 3, 4))
    assert book.free(2, now=1.0) == 0
    # holds expire if the caller never arrived
    assert book.free(2, now=10.0) == 1


def test_slot_book_ignores_dead_workers_and_excluded() -> None:
    book = SlotBook()
    peers = _peers(0, 0)
    peers[0] = PeerSlots(1, "127.0.0.1", 6000, 4, 0, alive=False)
    book.update(peers)
    chosen = book.choose(now=0.0)
    assert chosen is not None and chosen.worker == 2
    assert book.choose(now=0.0, exclude=2) is None


def test_redirect_contact_keeps_transport() -> None:
    assert redirect_contact("lobby", "10.0.0.5", 5070, "udp") == "<sip:lobby@10.0.0.5:5070>"
    assert (
        redirect_contact("lobby", "10.0.0.5", 5070, "TCP")
        == "<sip:lobby@10.0.0.5:5070;transport=tcp>"
    )
    assert redirect_contact("lobby", "::1", 5071, "tls") == "<sip:lobby@[::1]:5071;transport=tls>"


def test_via_transport() -> None:
    assert via_transport("SIP/2.0/TCP 10.0.0.1:5060;branch=z") == "tcp"
    assert via_transport("garbage") == "udp"
    assert via_transport("") == "udp"


def test_draining_node_answers_503_but_still_refuses_bans_and_redirects_owned_rooms() -> None:
    draining = RoomDirectory.create(
        ["lobby", "ops"], bans={"lobby": ["sip:eve@evil.example"]},
        owners={"ops": "sip:ops@10.0.0.2:5060"}, draining=True,
    )  # fmt: skip
    d = admit(draining, "lobby", ["sip:bob@x"], has_local_slot=True, retry_after=30)
    assert isinstance(d, Reject) and d.status == 503 and d.retry_after == 30
    banned = admit(draining, "lobby", ["sip:eve@evil.example"], has_local_slot=True)
    assert isinstance(banned, Reject) and banned.status == 403
    assert admit(draining, "ops", ["sip:bob@x"], has_local_slot=True) == Moved(
        "sip:ops@10.0.0.2:5060"
    )


def test_slot_book_counts_pending_redirects_per_source() -> None:
    from bridge.core.admission import PeerSlots, SlotBook

    book = SlotBook(hold_s=4.0)
    book.update([PeerSlots(1, "127.0.0.1", 5070, capacity=4, busy=0)])
    book.hold(1, 0.0, "192.0.2.1")
    book.hold(1, 1.0, "192.0.2.1")
    book.hold(1, 1.0, "198.51.100.7")
    assert book.pending_from("192.0.2.1", 2.0) == 2
    assert book.free(1, 2.0) == 1
    assert book.pending_from("192.0.2.1", 4.5) == 1  # the first hold expired
    book.update([PeerSlots(1, "127.0.0.1", 5070, capacity=4, busy=1)])  # one arrived
    assert book.pending_from("192.0.2.1", 4.5) == 0


def _rated(worker: int, rate: int, busy: int = 0, capacity: int = 4) -> PeerSlots:
    return PeerSlots(worker, "127.0.0.1", 6000 + worker, capacity, busy, bridge_rate=rate)


def test_wanted_bridge_rate_is_the_lowest_that_carries_the_whole_band() -> None:
    from bridge.core.admission import wanted_bridge_rate

    both = (48000, 8000, 48000)
    assert wanted_bridge_rate(8000, both) == 8000  # G.711
    assert wanted_bridge_rate(16000, both) == 48000  # G.722
    assert wanted_bridge_rate(48000, both) == 48000  # opus, late offer
    assert wanted_bridge_rate(48000, (8000,)) == 8000  # only narrowband: the best there is
    assert wanted_bridge_rate(8000, (48000,)) == 48000


def test_front_routes_each_leg_to_a_worker_of_its_rate_and_spills_when_none_has_room() -> None:
    """Front narrowband (8 kHz), worker 1 wideband, worker 2 narrowband."""
    book = SlotBook()
    book.update([_rated(1, 48000), _rated(2, 8000, busy=1)])
    # G.711 at a narrowband front: here
    r = book.route(0.0, 8000, own_rate=8000, own_has_slot=True)
    assert r.local and r.peer is None and not r.spilled and r.bridge_rate == 8000
    # opus / G.722 at a narrowband front: the wideband worker, although the front has room
    for rate in (48000, 16000):
        r = book.route(0.0, rate, own_rate=8000, own_has_slot=True)
        assert not r.local and r.peer is not None and r.peer.worker == 1 and not r.spilled
    # G.711 at a full narrowband front: the other narrowband worker, not the emptier wideband
    r = book.route(0.0, 8000, own_rate=8000, own_has_slot=False)
    assert r.peer is not None and r.peer.worker == 2 and not r.spilled
    # wideband worker full: an opus caller spills onto the front (narrowband audio)
    book.update([_rated(1, 48000, busy=4), _rated(2, 8000, busy=1)])
    r = book.route(0.0, 48000, own_rate=8000, own_has_slot=True)
    assert r.local and r.spilled and r.bridge_rate == 8000
    # … and, the front full too, onto any worker with room
    r = book.route(0.0, 48000, own_rate=8000, own_has_slot=False)
    assert r.peer is not None and r.peer.worker == 2 and r.spilled
    # nowhere at all
    book.update([_rated(1, 48000, busy=4), _rated(2, 8000, busy=4)])
    r = book.route(0.0, 8000, own_rate=8000, own_has_slot=False)
    assert not r.local and r.peer is None


def test_front_routing_counts_redirects_in_flight_and_ignores_dead_workers() -> None:
    book = SlotBook()
    book.update([_rated(1, 8000, capacity=1), _rated(2, 8000, capacity=4)])
    book.hold(1, 0.0)  # one G.711 caller already sent to worker 1
    # wideband front: G.711 goes to the narrowband worker with room left (2, not 1)
    r = book.route(0.5, 8000, own_rate=48000, own_has_slot=True)
    assert r.peer is not None and r.peer.worker == 2
    # every narrowband worker dead: G.711 stays on the wideband front, not a spill
    book.update([PeerSlots(1, "h", 1, 4, 0, alive=False, bridge_rate=8000)])
    r = book.route(0.5, 8000, own_rate=48000, own_has_slot=True)
    assert r.local and not r.spilled


def test_without_narrowband_workers_the_front_serves_itself_first_as_before() -> None:
    book = SlotBook()
    book.update(_peers(0, 2))
    assert book.route(0.0, 8000, own_rate=48000, own_has_slot=True).local
    r = book.route(0.0, 8000, own_rate=48000, own_has_slot=False)
    assert r.peer is not None and r.peer.worker == 1 and not r.spilled

