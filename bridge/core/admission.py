"""Pure admission rules for INVITEs: which rooms exist, who is banned, where a call goes.

The supervisor decides (later from Redis) and pushes a :class:`RoomDirectory` snapshot to
every worker; a worker then answers an INVITE from its local copy without a round-trip,
so INVITE handling never waits on the supervisor. The front keeps a :class:`SlotBook` of
every worker's free call slots to pick a redirect target. No I/O, no pjsua2: unit-tested.
Domain rules, so they live in :mod:`bridge.core`; the SIP workers apply them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

ALL_ROOMS = "*"  # key in RoomDirectory.bans: banned from every room of the node


def strip_uri_params(uri: str) -> str:
    """``sip:user@host;transport=tcp`` → ``sip:user@host`` (identity comparison form)."""
    return uri.split(";", 1)[0].split("?", 1)[0]


def normalize_caller(uri: str) -> str:
    """Comparison form of a caller identity (its AOR): no params, no port, lower case,
    ``sips:`` ≡ ``sip:``."""
    uri = strip_uri_params(uri.strip().strip("<>")).lower()
    if uri.startswith("sips:"):
        uri = "sip:" + uri[5:]
    scheme, _, rest = uri.partition(":")
    user, at, host = rest.rpartition("@")
    host = host[: host.find("]") + 1] if host.startswith("[") else host.split(":", 1)[0]
    return f"{scheme}:{user}{at}{host}"


@dataclass(frozen=True, slots=True)
class RoomDirectory:
    """Admission snapshot: linked rooms, bans (per room, or ``"*"`` for all), locked rooms,
    and ``held`` rooms (a dial-in PIN is set: new legs start out of the mix).

    Room names are SIP URI user parts, compared lower-cased. Build it with
    :meth:`create` so that names and caller URIs are normalised once.
    """

    rooms: frozenset[str] = frozenset()
    bans: Mapping[str, frozenset[str]] = field(default_factory=dict)
    locked: frozenset[str] = frozenset()
    version: int = 0
    #: rooms another replica owns (room lease in Redis) → the SIP URI to redirect to
    owners: Mapping[str, str] = field(default_factory=dict)
    held: frozenset[str] = frozenset()
    #: the node is draining (SIGTERM): calls in progress go on, new ones get 503
    draining: bool = False
    #: rooms whose MUC is public and open (not members-only): outsiders may see who is there
    public: frozenset[str] = frozenset()
    #: verified identity keys with a leg in each room: who may send out-of-dialog MESSAGE
    present: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: linked rooms whose state (bans, lock, PIN) could not be read: new calls get 503
    unknown: frozenset[str] = frozenset()

    @classmethod
    def create(
        cls,
        rooms: Iterable[str],
        bans: Mapping[str, Iterable[str]] | None = None,
        locked: Iterable[str] = (),
        version: int = 0,
        *,
        held: Iterable[str] = (),
        owners: Mapping[str, str] | None = None,
        draining: bool = False,
        public: Iterable[str] = (),
        present: Mapping[str, Iterable[str]] | None = None,
        unknown: Iterable[str] = (),
    ) -> RoomDirectory:
        return cls(
            rooms=frozenset(r.lower() for r in rooms),
            bans={
                room.lower(): frozenset(normalize_caller(u) for u in uris)
                for room, uris in (bans or {}).items()
            },
            locked=frozenset(r.lower() for r in locked),
            version=version,
            held=frozenset(r.lower() for r in held),
            owners={room.lower(): uri for room, uri in (owners or {}).items()},
            draining=draining,
            public=frozenset(r.lower() for r in public),
            present={
                room.lower(): frozenset(normalize_caller(k) for k in keys)
                for room, keys in (present or {}).items()
            },
            unknown=frozenset(r.lower() for r in unknown),
        )

    def is_present(self, room: str, key: str) -> bool:
        return normalize_caller(key) in self.present.get(room.lower(), frozenset())

    def is_banned(self, room: str, callers: Iterable[str]) -> bool:
        ids = {normalize_caller(c) for c in callers if c}
        room_bans = self.bans.get(room.lower(), frozenset())
        every = self.bans.get(ALL_ROOMS, frozenset())
        return bool(ids & room_bans) or bool(ids & every)


@dataclass(frozen=True, slots=True)
class Accept:
    """Serve the call here."""


@dataclass(frozen=True, slots=True)
class Redirect:
    """``302 Moved Temporarily`` to the worker at ``host:port``."""

    worker: int
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Moved:
    """``302`` to another replica that owns the room (``contact`` is its SIP URI)."""

    contact: str


RejectKind = Literal[
    "unknown_room", "banned", "locked", "draining", "busy", "bad_request", "state_unknown"
]


@dataclass(frozen=True, slots=True)
class Reject:
    """Final error response; ``retry_after`` seconds adds a Retry-After header when > 0.
    ``kind`` says why, for ``sipmuc_calls_rejected_total{reason}``."""

    status: int
    reason: str
    retry_after: int = 0
    kind: RejectKind = "bad_request"


Decision = Accept | Redirect | Moved | Reject


def admit(
    directory: RoomDirectory,
    room: str,
    callers: Sequence[str],
    *,
    has_local_slot: bool,
    redirect: Redirect | None = None,
    retry_after: int = 30,
    is_front: bool = False,
    refuse_unverified: bool = False,
) -> Decision:
    """Decide an INVITE to ``room`` from ``callers`` (the identity's ban keys: its verified
    key, or an unverified caller's source address and From hint; see
    :mod:`bridge.core.caller_identity`). ``refuse_unverified``: the room is verified-only
    and this caller is not.

    Order matters: an unknown room is 404, a room whose bans, lock and PIN could not be
    read 503 (fail closed, DESIGN §3), and a banned caller 403 before any capacity
    question, so that no caller is bounced through a redirect only to be refused there.
    A full node answers 503 from the front (nowhere to go) and 486 from a worker (busy
    right here; the caller or the front may retry), both with Retry-After.
    """
    if not room:
        return Reject(404, "No conference in the Request-URI", kind="unknown_room")
    if room.lower() not in directory.rooms:
        return Reject(404, "Conference not found", kind="unknown_room")
    if refuse_unverified:
        return Reject(403, "Verified callers only (authenticate or call through the PBX)")
    if room.lower() in directory.unknown:  # bans, lock, PIN unknown: fail closed
        return Reject(503, "Conference state unavailable", retry_after, kind="state_unknown")
    if directory.is_banned(room, callers):
        return Reject(403, "Banned from this conference", kind="banned")
    if room.lower() in directory.locked:
        return Reject(403, "Conference is locked", kind="locked")
    owner = directory.owners.get(room.lower())
    if owner:
        return Moved(owner)
    if directory.draining:
        return Reject(503, "Conference node is shutting down", retry_after, kind="draining")
    if has_local_slot:
        return Accept()
    if redirect is not None:
        return redirect
    if is_front:
        return Reject(503, "Conference node is full", retry_after, kind="busy")
    return Reject(486, "Busy Here", retry_after, kind="busy")


@dataclass(frozen=True, slots=True)
class PeerSlots:
    """One worker's SIP address and its call-slot occupancy, as the pool knows it."""

    worker: int
    host: str
    port: int
    capacity: int
    busy: int
    tls_port: int = 0
    alive: bool = True
    bridge_rate: int = 48000  # its pjmedia conference bridge (8000: a narrowband worker)

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.busy) if self.alive else 0


def wanted_bridge_rate(rate: int, bridge_rates: Iterable[int]) -> int:
    """The bridge rate a leg of ``rate`` should land on: the lowest that carries its whole
    band (no bandwidth lost, no more resampling than needed), else the highest there is.
    With 8 and 48 kHz workers: G.711 → 8 kHz; G.722, opus and late offers → 48 kHz."""
    rates = sorted(set(bridge_rates))
    if not rates:
        raise ValueError("no bridge rates to choose from")
    for candidate in rates:
        if candidate >= rate:
            return candidate
    return rates[-1]


@dataclass(frozen=True, slots=True)
class Route:
    """The front's placement of one INVITE: here (``local``), on ``peer`` (a 302), or
    nowhere (neither: the node is full). ``spilled``: not on a worker of the wanted rate."""

    local: bool = False
    peer: PeerSlots | None = None
    bridge_rate: int = 0
    spilled: bool = False


class SlotBook:
    """The front's view of free slots: pool snapshots minus redirects still in flight.

    A redirected caller takes a moment to reach its worker; until that worker reports a
    higher busy count (or ``hold_s`` passes) the redirect holds a slot, so a burst of
    INVITEs is spread instead of all being sent to the same last free slot.
    """

    def __init__(self, hold_s: float = 4.0) -> None:
        self.hold_s = hold_s
        self._peers: dict[int, PeerSlots] = {}
        self._pending: dict[int, list[tuple[float, str]]] = {}  # (expiry, source address)

    def update(self, peers: Iterable[PeerSlots]) -> None:
        """Replace the snapshot; a risen busy count consumes the oldest pending holds."""
        fresh = {p.worker: p for p in peers}
        for worker, peer in fresh.items():
            old = self._peers.get(worker)
            pending = self._pending.get(worker)
            if old is not None and pending:
                arrived = max(0, peer.busy - old.busy)
                del pending[:arrived]
            if not peer.alive:
                self._pending.pop(worker, None)
        for worker in set(self._pending) - set(fresh):
            del self._pending[worker]
        self._peers = fresh

    def free(self, worker: int, now: float) -> int:
        peer = self._peers.get(worker)
        if peer is None:
            return 0
        self._expire(worker, now)
        return max(0, peer.free - len(self._pending.get(worker, ())))

    def total_free(self, now: float, exclude: int | None = None) -> int:
        return sum(self.free(w, now) for w in self._peers if w != exclude)

    def choose(
        self, now: float, exclude: int | None = None, bridge_rate: int | None = None
    ) -> PeerSlots | None:
        """The worker with the most free slots (lowest index on ties), or None; only among
        workers whose bridge runs at ``bridge_rate`` when it is given."""
        best: PeerSlots | None = None
        best_free = 0
        for worker in sorted(self._peers):
            if worker == exclude:
                continue
            if bridge_rate is not None and self._peers[worker].bridge_rate != bridge_rate:
                continue
            free = self.free(worker, now)
            if free > best_free:
                best, best_free = self._peers[worker], free
        return best

    def route(
        self, now: float, leg_rate: int, *, own_rate: int, own_has_slot: bool
    ) -> Route:
        """Where the front puts an INVITE whose leg runs at ``leg_rate``: on a worker whose
        bridge runs at :func:`wanted_bridge_rate` (itself first, then the peer with the most
        free slots) when one has room, else anywhere with room, itself first (the audio
        stays right; only CPU, or a wideband caller's upper band, is lost)."""
        rates = [own_rate, *(p.bridge_rate for p in self._peers.values() if p.alive)]
        wanted = wanted_bridge_rate(leg_rate, rates)
        if own_has_slot and own_rate == wanted:
            return Route(local=True, bridge_rate=own_rate)
        peer = self.choose(now, bridge_rate=wanted)
        if peer is not None:
            return Route(peer=peer, bridge_rate=peer.bridge_rate)
        if own_has_slot:
            return Route(local=True, bridge_rate=own_rate, spilled=True)
        peer = self.choose(now)
        if peer is not None:
            return Route(peer=peer, bridge_rate=peer.bridge_rate, spilled=True)
        return Route()

    def hold(self, worker: int, now: float, source: str = "") -> None:
        """Count a redirect to ``worker`` against its free slots until it arrives."""
        self._pending.setdefault(worker, []).append((now + self.hold_s, source))

    def pending_from(self, source: str, now: float) -> int:
        """Redirects of ``source`` still in flight: they count against its call cap, or a
        caller who never follows its 302s would hold every worker's slots for nothing."""
        count = 0
        for worker in self._pending:
            self._expire(worker, now)
            count += sum(1 for _, s in self._pending[worker] if s == source)
        return count

    def _expire(self, worker: int, now: float) -> None:
        pending = self._pending.get(worker)
        if pending:
            pending[:] = [(t, s) for t, s in pending if t > now]


def redirect_contact(room: str, host: str, port: int, transport: str) -> str:
    """Contact header value of a 302 to a worker, keeping the caller's transport."""
    transport = transport.lower()
    host_part = f"[{host}]" if ":" in host and not host.startswith("[") else host
    # TLS as `sip:…;transport=tls`, not `sips:`: sips demands TLS on every hop to the
    # target, and baresip 1.0 cannot follow a sips: redirect at all (ENOSYS)
    params = f";transport={transport}" if transport in ("tcp", "tls") else ""
    return f"<sip:{room}@{host_part}:{port}{params}>"
