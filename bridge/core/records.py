"""The stored room state as plain values, and the changes the policy asks the store to make.

Pure (no I/O): the policy reads :class:`RoomState` and returns :class:`Put`/:class:`Delete`
changes; :meth:`RoomState.apply` applies them in memory with exactly the rule the Lua script
applies them in Redis, so the cached state and the stored state cannot drift apart.

Rule: a ``Put`` whose record has the same *token* as the stored one changes nothing (the
first record, with its actor/time/origin, is kept); a ``Delete`` of a missing key changes
nothing. The room version rises by one per event that changed anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, ClassVar, Literal, Self

Table = Literal["meta", "legs", "mutes", "bans", "roles", "bindings"]
TABLES: tuple[Table, ...] = ("meta", "legs", "mutes", "bans", "roles", "bindings")
MuteKind = Literal["moderator", "self"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """Common provenance: who set it, when, and from which side."""

    TABLE: ClassVar[Table]
    actor: str = ""
    at: float = 0.0
    origin: str = ""

    def token(self) -> str:
        """The part that matters for 'did anything change'."""
        raise NotImplementedError

    def to_json(self) -> str:
        data = asdict(self)
        data["s"] = self.token()
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Self:
        data: dict[str, Any] = json.loads(text)
        names = {f.name for f in fields(cls)}
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names
        }
        return cls(**values)


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkRecord(Record):
    """meta field ``link``: this conference is glued to that MUC room."""

    TABLE: ClassVar[Table] = "meta"
    muc_jid: str

    def token(self) -> str:
        return self.muc_jid


@dataclass(frozen=True, slots=True, kw_only=True)
class SubjectRecord(Record):
    TABLE: ClassVar[Table] = "meta"
    text: str

    def token(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True, kw_only=True)
class ConferenceRecord(Record):
    """meta field ``conference``: the owner's settings of the conference (issue 8).

    ``locked``: new INVITEs get 403; ``pin_hash``: callers must enter the PIN first (a salted
    hash from :func:`bridge.core.pin.hash_pin`, never the digits); ``external_uri``: the room
    is bound to a conference elsewhere that the bridge dials into. Absent = all off, so
    rooms stored before this record existed read exactly as before.
    """

    TABLE: ClassVar[Table] = "meta"
    locked: bool = False
    pin_hash: str = ""
    external_uri: str = ""

    def token(self) -> str:
        return f"{int(self.locked)}|{self.pin_hash}|{self.external_uri}"


@dataclass(frozen=True, slots=True, kw_only=True)
class LegRecord(Record):
    """One SIP call in the room and the occupant that shows it."""

    TABLE: ClassVar[Table] = "legs"
    leg_id: str
    caller_uri: str  # comparison form (identity.caller_key)
    participant: str  # moderation key: xmpp:<jid> when bound, else the caller URI
    nick: str = ""
    puppet_jid: str = ""  # empty for a bound participant (shown by their own occupant)
    call_id: str = ""
    node: str = ""
    accepts_messages: bool = True

    def token(self) -> str:
        return self.leg_id

    @property
    def bound_jid(self) -> str:
        return self.participant[5:] if self.participant.startswith("xmpp:") else ""


@dataclass(frozen=True, slots=True, kw_only=True)
class MuteRecord(Record):
    """Key: participant. ``self`` = the caller's own *6; ``moderator`` = a moderator's."""

    TABLE: ClassVar[Table] = "mutes"
    kind: MuteKind = "moderator"

    def token(self) -> str:
        return self.kind


@dataclass(frozen=True, slots=True, kw_only=True)
class BanRecord(Record):
    """Key: participant (``sip:…`` caller or ``xmpp:…`` JID); INVITEs get 403 while it stands."""

    TABLE: ClassVar[Table] = "bans"
    reason: str = ""
    puppet_jids: tuple[str, ...] = ()  # the caller's outcast puppet JIDs in the room

    def token(self) -> str:
        return "banned"


@dataclass(frozen=True, slots=True, kw_only=True)
class RoleRecord(Record):
    """Key: participant. Only owner/moderator are stored; absence = participant."""

    TABLE: ClassVar[Table] = "roles"
    privilege: str

    def token(self) -> str:
        return self.privilege


@dataclass(frozen=True, slots=True, kw_only=True)
class BindingRecord(Record):
    """Key: caller URI. A verified caller ↔ JID binding (never from a header alone)."""

    TABLE: ClassVar[Table] = "bindings"
    jid: str
    verified_by: str

    def token(self) -> str:
        return self.jid


@dataclass(frozen=True, slots=True)
class Put:
    table: Table
    key: str
    record: Record


@dataclass(frozen=True, slots=True)
class Delete:
    table: Table
    key: str


Change = Put | Delete

META_FIELDS: Mapping[str, type[Record]] = {
    "link": LinkRecord,
    "subject": SubjectRecord,
    "conference": ConferenceRecord,
}
ROW_TYPES: Mapping[Table, type[Record]] = {
    "legs": LegRecord,
    "mutes": MuteRecord,
    "bans": BanRecord,
    "roles": RoleRecord,
    "bindings": BindingRecord,
}


def put(key: str, record: Record) -> Put:
    return Put(record.TABLE, key, record)


def change_to_wire(change: Change) -> dict[str, str]:
    """JSON-able form used by the Lua script and the outbox."""
    if isinstance(change, Put):
        return {"t": change.table, "k": change.key, "s": change.record.token(),
                "r": change.record.to_json()}  # fmt: skip
    return {"t": change.table, "k": change.key}


def change_from_wire(data: Mapping[str, str]) -> Change:
    table: Table = data["t"]  # type: ignore[assignment]
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}")
    if "r" not in data:
        return Delete(table, data["k"])
    return Put(table, data["k"], decode_record(table, data["k"], data["r"]))


def decode_record(table: Table, key: str, text: str) -> Record:
    if table == "meta":
        kind = META_FIELDS.get(key)
        if kind is None:
            raise ValueError(f"unknown meta field {key!r}")
        return kind.from_json(text)
    return ROW_TYPES[table].from_json(text)


@dataclass(frozen=True)
class RoomState:
    """Everything stored about one room. Treat the mappings as read-only."""

    room: str
    version: int = 0
    link: LinkRecord | None = None
    subject: SubjectRecord | None = None
    conference: ConferenceRecord | None = None
    legs: Mapping[str, LegRecord] = field(default_factory=dict)
    mutes: Mapping[str, MuteRecord] = field(default_factory=dict)
    bans: Mapping[str, BanRecord] = field(default_factory=dict)
    roles: Mapping[str, RoleRecord] = field(default_factory=dict)
    bindings: Mapping[str, BindingRecord] = field(default_factory=dict)

    # ---- queries used by the policy ---------------------------------------------------

    def legs_of(self, participant: str) -> list[LegRecord]:
        return [leg for leg in self.legs.values() if leg.participant == participant]

    def leg_by_puppet(self, jid: str) -> LegRecord | None:
        for leg in self.legs.values():
            if leg.puppet_jid and leg.puppet_jid == jid:
                return leg
        return None

    def privilege(self, participant: str) -> str:
        role = self.roles.get(participant)
        return role.privilege if role is not None else "participant"

    def is_banned(self, *participants: str) -> bool:
        return any(p in self.bans for p in participants if p)

    def banned_callers(self) -> frozenset[str]:
        """SIP caller URIs refused with 403 (for the workers' admission snapshot), including
        callers with a stored binding to a banned JID."""
        out = {k for k in self.bans if not k.startswith("xmpp:")}
        for caller, binding in self.bindings.items():
            if "xmpp:" + binding.jid in self.bans:
                out.add(caller)
        return frozenset(out)

    # ---- applying changes (same rule as the Lua script) -------------------------------

    def apply(self, changes: Iterable[Change]) -> tuple[RoomState, bool]:
        """Return the new state and whether anything changed (then the version rose by 1)."""
        tables: dict[Table, dict[str, Any]] = {}
        meta: dict[str, Record | None] = {
            "link": self.link,
            "subject": self.subject,
            "conference": self.conference,
        }
        changed = False
        for change in changes:
            if change.table == "meta":
                current = meta.get(change.key)
                if isinstance(change, Put):
                    if current is None or current.token() != change.record.token():
                        meta[change.key] = change.record
                        changed = True
                elif current is not None:
                    meta[change.key] = None
                    changed = True
                continue
            if change.table not in tables:
                tables[change.table] = dict(getattr(self, change.table))
            rows = tables[change.table]
            current = rows.get(change.key)
            if isinstance(change, Put):
                if current is None or current.token() != change.record.token():
                    rows[change.key] = change.record
                    changed = True
            elif current is not None:
                del rows[change.key]
                changed = True
        if not changed:
            return self, False
        link = meta["link"]
        subject = meta["subject"]
        conference = meta["conference"]
        assert link is None or isinstance(link, LinkRecord)
        assert subject is None or isinstance(subject, SubjectRecord)
        assert conference is None or isinstance(conference, ConferenceRecord)
        new = replace(self, version=self.version + 1, link=link, subject=subject,
                      conference=conference, **tables)  # type: ignore[arg-type]  # fmt: skip
        return new, True


__all__ = [
    "TABLES",
    "BanRecord",
    "BindingRecord",
    "Change",
    "ConferenceRecord",
    "Delete",
    "LegRecord",
    "LinkRecord",
    "MuteKind",
    "MuteRecord",
    "Put",
    "Record",
    "RoleRecord",
    "RoomState",
    "SubjectRecord",
    "Table",
    "change_from_wire",
    "change_to_wire",
    "decode_record",
    "put",
]
