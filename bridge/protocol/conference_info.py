"""RFC 4575 conference-info documents: a typed model, rendering, diffs, parsing, merging.

Pure code, no I/O. Three layers:

* :class:`RoomView` — what the supervisor knows about one bridged room (callers, chat occupants,
  subject, URIs). :func:`conference_from_room` maps it to the document model following RFC 7081
  §4: one ``<user>`` per SIP caller and per chat-only occupant; a caller bound to an occupant is
  one user with two endpoints. An endpoint with an audio ``<media>`` is on the call, an endpoint
  without media is in the chat only, so a client tells text-only, audio-only and both apart.
* :class:`ConferenceInfo` and friends — the document model (the subset of RFC 4575 we produce
  and understand), with :func:`render` to XML, :func:`diff` (old, new → partial document with
  only the changed users, ``state="deleted"`` for removed ones), :func:`parse` (received XML,
  DTDs and entities refused, size-limited) and :func:`apply_partial` (RFC 4575 §4.6 merging).
* :class:`ConferenceInfoStream` — the ``version`` counter. RFC 4575 §5.1 scopes versions to a
  subscription (start at 1, +1 per document sent to that subscriber), so there is one stream
  per recipient: the SIP event service keeps one per subscription; a publisher of one document
  stream per room (logs, pubsub) keeps one per room.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any
from urllib.parse import quote
from xml.etree.ElementTree import Element as StdElement

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as safe_fromstring
from lxml import etree

NS = "urn:ietf:params:xml:ns:conference-info"
CONTENT_TYPE = "application/conference-info+xml"
GROUPTEXTCHAT = "grouptextchat"  # RFC 7106 purpose of the room's xmpp: URI
PARTICIPATION = "participation"  # RFC 4575 purpose of the dial-in URI
DEFAULT_MAX_DOCUMENT_BYTES = 256 * 1024
_MAX_UINT32 = 2**32 - 1
_Q = "{" + NS + "}"

# XML 1.0 Char production; anything else (NUL, most C0 controls, lone surrogates, U+FFFE/F) is
# replaced so that a caller's odd display name can never make a document unserialisable.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class ConferenceInfoError(ValueError):
    """A model value or a received document that we cannot represent or accept."""


class DocState(StrEnum):
    FULL = "full"
    PARTIAL = "partial"
    DELETED = "deleted"


class EndpointStatus(StrEnum):
    PENDING = "pending"
    DIALING_OUT = "dialing-out"
    DIALING_IN = "dialing-in"
    ALERTING = "alerting"
    ON_HOLD = "on-hold"
    CONNECTED = "connected"
    MUTED_VIA_FOCUS = "muted-via-focus"
    DISCONNECTING = "disconnecting"
    DISCONNECTED = "disconnected"


class MediaStatus(StrEnum):
    RECVONLY = "recvonly"
    SENDONLY = "sendonly"
    SENDRECV = "sendrecv"
    INACTIVE = "inactive"


class JoiningMethod(StrEnum):
    DIALED_IN = "dialed-in"
    DIALED_OUT = "dialed-out"
    FOCUS_OWNER = "focus-owner"


def xml_text(value: str) -> str:
    """``value`` with every character XML 1.0 cannot carry replaced by U+FFFD."""
    return _NOT_XML_CHAR.sub("\ufffd", value)


def _check_uri(value: str, what: str) -> None:
    if not value or value != value.strip() or any(c.isspace() for c in value):
        raise ConferenceInfoError(f"{what} must be a non-empty URI without spaces: {value!r}")
    if _NOT_XML_CHAR.search(value):
        raise ConferenceInfoError(f"{what} contains characters XML cannot carry: {value!r}")


# ---------------------------------------------------------------------------------------------
# Document model
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UriEntry:
    uri: str
    display_text: str | None = None
    purpose: str | None = None

    def __post_init__(self) -> None:
        _check_uri(self.uri, "uri entry")


@dataclass(frozen=True, slots=True)
class AvailableMedium:
    label: str
    type: str
    status: MediaStatus | None = None


@dataclass(frozen=True, slots=True)
class Description:
    """``<conference-description>``; has no ``state``: in a partial document it replaces."""

    display_text: str | None = None
    subject: str | None = None
    conf_uris: tuple[UriEntry, ...] = ()
    service_uris: tuple[UriEntry, ...] = ()
    available_media: tuple[AvailableMedium, ...] = ()


@dataclass(frozen=True, slots=True)
class ConferenceStateInfo:
    """``<conference-state>``; has no ``state``: in a partial document it replaces."""

    user_count: int | None = None
    active: bool | None = None
    locked: bool | None = None


@dataclass(frozen=True, slots=True)
class Media:
    id: str
    type: str | None = "audio"
    label: str | None = None
    src_id: str | None = None
    status: MediaStatus | None = MediaStatus.SENDRECV
    display_text: str | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    entity: str
    display_text: str | None = None
    status: EndpointStatus | None = EndpointStatus.CONNECTED
    joining_method: JoiningMethod | None = None
    media: tuple[Media, ...] = ()
    state: DocState = DocState.FULL

    def __post_init__(self) -> None:
        _check_uri(self.entity, "endpoint entity")
        ids = [m.id for m in self.media]
        if len(ids) != len(set(ids)):
            raise ConferenceInfoError(f"endpoint {self.entity}: duplicate media ids {ids}")


@dataclass(frozen=True, slots=True)
class User:
    entity: str
    display_text: str | None = None
    roles: tuple[str, ...] | None = ()
    endpoints: tuple[Endpoint, ...] = ()
    state: DocState = DocState.FULL

    def __post_init__(self) -> None:
        _check_uri(self.entity, "user entity")
        ids = [e.entity for e in self.endpoints]
        if len(ids) != len(set(ids)):
            raise ConferenceInfoError(f"user {self.entity}: duplicate endpoints {ids}")


@dataclass(frozen=True, slots=True)
class ConferenceInfo:
    """One conference-info document (full or partial). ``version`` is set by the stream."""

    entity: str
    description: Description | None = None
    conference_state: ConferenceStateInfo | None = None
    users: tuple[User, ...] | None = ()
    state: DocState = DocState.FULL
    version: int | None = None
    users_state: DocState = DocState.FULL

    def __post_init__(self) -> None:
        _check_uri(self.entity, "conference entity")
        if self.version is not None and not 0 <= self.version <= _MAX_UINT32:
            raise ConferenceInfoError(f"version out of range: {self.version}")
        ids = [u.entity for u in self.users or ()]
        if len(ids) != len(set(ids)):
            raise ConferenceInfoError(f"duplicate user entities in {self.entity}: {ids}")

    def user(self, entity: str) -> User | None:
        return next((u for u in self.users or () if u.entity == entity), None)


# ---------------------------------------------------------------------------------------------
# Bridge view → document
# ---------------------------------------------------------------------------------------------


def xmpp_uri(jid: str, query: str | None = None) -> str:
    """RFC 5122 ``xmpp:`` URI for a JID (node/domain/resource percent-encoded as needed)."""
    bare, slash, resource = jid.partition("/")
    node, at, domain = bare.rpartition("@")
    if not domain or (at and not node) or (slash and not resource):
        raise ConferenceInfoError(f"not a JID: {jid!r}")
    # RFC 5122 §2.2: node and resource are IRI-encoded; keep the characters it allows.
    enc_node = quote(node, safe="!$()*+,;=-._~") if at else ""
    uri = "xmpp:" + (enc_node + "@" if at else "") + quote(domain, safe="-._~")
    if slash:
        uri += "/" + quote(resource, safe="!$&'()*+,;=-._~:@")
    if query:
        uri += "?" + query
    return uri


@dataclass(frozen=True, slots=True)
class AudioLeg:
    """A participant's SIP call into the conference (the bridge's view of one leg)."""

    endpoint_uri: str  # what subscribers see as the endpoint (caller URI, or a masked one)
    muted_by_focus: bool = False  # moderation mute: status muted-via-focus, media recvonly
    on_hold: bool = False
    media_id: str = "1"
    src_id: str | None = None  # RTP SSRC as text, when known


@dataclass(frozen=True, slots=True)
class ChatPresence:
    """A participant's occupant in the MUC room."""

    nick: str
    real_jid: str | None = None  # shown only when the room lets occupants see real JIDs


@dataclass(frozen=True, slots=True)
class Participant:
    """One person: a caller, a chat occupant, or a caller bound (verified) to an occupant.

    ``entity`` is the user URI shown to subscribers. Leave it ``None`` for a chat-only
    occupant: it is then the real JID when allowed, else the occupant JID.
    """

    display_text: str
    audio: AudioLeg | None = None
    chat: ChatPresence | None = None
    entity: str | None = None
    roles: tuple[str, ...] = ("participant",)


@dataclass(frozen=True, slots=True)
class RoomView:
    """What the supervisor knows about one bridged room, enough to describe the conference."""

    focus_uri: str  # the conference's entity: sip:<room>@<sip-domain>
    room_jid: str  # the MUC room, advertised as xmpp:<room-jid>?join (RFC 7106)
    participants: tuple[Participant, ...] = ()
    subject: str = ""
    display_text: str | None = None
    conf_uri: str | None = None  # dial-in URI; defaults to focus_uri
    show_real_jids: bool = False  # non-anonymous room: real JIDs may be shown
    locked: bool = False


def _participant_user(room: RoomView, person: Participant) -> User:
    if person.audio is None and person.chat is None:
        raise ConferenceInfoError(f"participant {person.display_text!r} is neither on the call "
                                  "nor in the chat")
    endpoints: list[Endpoint] = []
    if person.audio is not None:
        leg = person.audio
        endpoints.append(Endpoint(
            entity=leg.endpoint_uri,
            status=(EndpointStatus.MUTED_VIA_FOCUS if leg.muted_by_focus
                    else EndpointStatus.ON_HOLD if leg.on_hold else EndpointStatus.CONNECTED),
            joining_method=JoiningMethod.DIALED_IN,
            media=(Media(id=leg.media_id, type="audio", src_id=leg.src_id,
                         status=(MediaStatus.RECVONLY if leg.muted_by_focus
                                 else MediaStatus.INACTIVE if leg.on_hold
                                 else MediaStatus.SENDRECV)),),
        ))
    occupant_uri = None
    if person.chat is not None:
        occupant_uri = xmpp_uri(f"{room.room_jid}/{person.chat.nick}")
        endpoints.append(Endpoint(entity=occupant_uri, status=EndpointStatus.CONNECTED))
    entity = person.entity
    if entity is None:
        if person.chat is None:
            raise ConferenceInfoError("a caller needs an explicit entity URI")
        if room.show_real_jids and person.chat.real_jid:
            entity = xmpp_uri(person.chat.real_jid.partition("/")[0])
        else:
            entity = occupant_uri
    assert entity is not None
    return User(entity=entity, display_text=xml_text(person.display_text) or None,
                roles=tuple(xml_text(r) for r in person.roles), endpoints=tuple(endpoints))


def _merge_same_person(users: Iterable[User]) -> tuple[User, ...]:
    """One ``<user>`` per entity: a person in the room from two clients (same real JID) is
    one user with two endpoints, not two users (RFC 4575 §5.6 keys users by entity)."""
    merged: dict[str, User] = {}
    for user in users:
        seen = merged.get(user.entity)
        if seen is None:
            merged[user.entity] = user
            continue
        known = {e.entity for e in seen.endpoints}
        roles = tuple(dict.fromkeys((*(seen.roles or ()), *(user.roles or ()))))
        merged[user.entity] = replace(
            seen,
            display_text=seen.display_text or user.display_text,
            roles=roles,
            endpoints=seen.endpoints + tuple(e for e in user.endpoints if e.entity not in known),
        )
    return tuple(merged.values())


def conference_from_room(room: RoomView) -> ConferenceInfo:
    """The full conference-info model of ``room`` (no version: a stream adds it)."""
    users = _merge_same_person(_participant_user(room, p) for p in room.participants)
    return ConferenceInfo(
        entity=room.focus_uri,
        description=Description(
            display_text=xml_text(room.display_text) if room.display_text else None,
            subject=xml_text(room.subject),
            conf_uris=(UriEntry(room.conf_uri or room.focus_uri, purpose=PARTICIPATION),),
            service_uris=(UriEntry(xmpp_uri(room.room_jid, "join"), purpose=GROUPTEXTCHAT),),
            available_media=(AvailableMedium(label="1", type="audio",
                                             status=MediaStatus.SENDRECV),),
        ),
        conference_state=ConferenceStateInfo(user_count=len(users), active=True,
                                             locked=room.locked),
        users=users,
    )


def without_people(conference: ConferenceInfo) -> ConferenceInfo:
    """The document an outsider of a members-only room gets: the conference, its URIs,
    media and user count, but no users (no nicks, no roles, no endpoints)."""
    return replace(conference, users=())


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def _sub(parent: etree._Element, tag: str, text: str | None = None,
         **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, _Q + tag, {k.replace("_", "-"): v for k, v in attrs.items()})
    if text is not None:
        el.text = xml_text(text)
    return el


def _uris(parent: etree._Element, tag: str, entries: tuple[UriEntry, ...]) -> None:
    if not entries:
        return
    box = _sub(parent, tag)
    for e in entries:
        entry = _sub(box, "entry")
        _sub(entry, "uri", e.uri)
        if e.display_text is not None:
            _sub(entry, "display-text", e.display_text)
        if e.purpose is not None:
            _sub(entry, "purpose", e.purpose)


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _render_endpoint(parent: etree._Element, ep: Endpoint) -> None:
    el = _sub(parent, "endpoint", entity=ep.entity)
    if ep.state is not DocState.FULL:
        el.set("state", ep.state.value)
    if ep.display_text is not None:
        _sub(el, "display-text", ep.display_text)
    if ep.status is not None:
        _sub(el, "status", ep.status.value)
    if ep.joining_method is not None:
        _sub(el, "joining-method", ep.joining_method.value)
    for m in ep.media:
        media = _sub(el, "media", id=m.id)
        if m.display_text is not None:
            _sub(media, "display-text", m.display_text)
        if m.type is not None:
            _sub(media, "type", m.type)
        if m.label is not None:
            _sub(media, "label", m.label)
        if m.src_id is not None:
            _sub(media, "src-id", m.src_id)
        if m.status is not None:
            _sub(media, "status", m.status.value)


def _render_user(parent: etree._Element, user: User) -> None:
    el = _sub(parent, "user", entity=user.entity, state=user.state.value)
    if user.state is DocState.DELETED:
        return
    if user.display_text is not None:
        _sub(el, "display-text", user.display_text)
    if user.roles:
        roles = _sub(el, "roles")
        for r in user.roles:
            _sub(roles, "entry", r)
    for ep in user.endpoints:
        _render_endpoint(el, ep)


def to_element(doc: ConferenceInfo) -> etree._Element:
    root = etree.Element(_Q + "conference-info", nsmap={None: NS})
    root.set("entity", doc.entity)
    root.set("state", doc.state.value)
    if doc.version is not None:
        root.set("version", str(doc.version))
    d = doc.description
    if d is not None:
        desc = _sub(root, "conference-description")
        if d.display_text is not None:
            _sub(desc, "display-text", d.display_text)
        if d.subject is not None:
            _sub(desc, "subject", d.subject)
        _uris(desc, "conf-uris", d.conf_uris)
        _uris(desc, "service-uris", d.service_uris)
        if d.available_media:
            box = _sub(desc, "available-media")
            for am in d.available_media:
                entry = _sub(box, "entry", label=am.label)
                _sub(entry, "type", am.type)
                if am.status is not None:
                    _sub(entry, "status", am.status.value)
    cs = doc.conference_state
    if cs is not None:
        st = _sub(root, "conference-state")
        if cs.user_count is not None:
            _sub(st, "user-count", str(cs.user_count))
        if cs.active is not None:
            _sub(st, "active", _bool(cs.active))
        if cs.locked is not None:
            _sub(st, "locked", _bool(cs.locked))
    if doc.users is not None:
        users = _sub(root, "users", state=doc.users_state.value)
        for u in doc.users:
            _render_user(users, u)
    return root


def render(doc: ConferenceInfo) -> bytes:
    """UTF-8 XML of ``doc`` with an XML declaration, ready as a NOTIFY body."""
    out: bytes = etree.tostring(to_element(doc), xml_declaration=True, encoding="UTF-8")
    return out


# ---------------------------------------------------------------------------------------------
# Diff and merge
# ---------------------------------------------------------------------------------------------


def diff(old: ConferenceInfo, new: ConferenceInfo) -> ConferenceInfo | None:
    """Partial document turning full state ``old`` into ``new``; ``None`` if nothing changed.

    Changed or added users go out whole (``state="full"``), removed ones as
    ``state="deleted"``; description and conference-state go out only when they changed.
    """
    if old.entity != new.entity:
        raise ConferenceInfoError(f"diff across conferences: {old.entity} → {new.entity}")
    old_users = {u.entity: u for u in old.users or ()}
    new_users = {u.entity: u for u in new.users or ()}
    changed = [u for u in new.users or () if old_users.get(u.entity) != u]
    deleted = [User(entity=e, roles=None, state=DocState.DELETED)
               for e in old_users if e not in new_users]
    description = new.description if new.description != old.description else None
    conf_state = (new.conference_state if new.conference_state != old.conference_state
                  else None)
    if not changed and not deleted and description is None and conf_state is None:
        return None
    return ConferenceInfo(
        entity=new.entity, state=DocState.PARTIAL, description=description,
        conference_state=conf_state,
        users=tuple(changed + deleted) if changed or deleted else None,
        users_state=DocState.PARTIAL,
    )


def _merge_media(old: tuple[Media, ...], new: tuple[Media, ...]) -> tuple[Media, ...]:
    merged = {m.id: m for m in old}
    merged.update({m.id: m for m in new})
    return tuple(merged.values())


def _merge_endpoint(old: Endpoint | None, new: Endpoint) -> Endpoint | None:
    if new.state is DocState.DELETED:
        return None
    if new.state is DocState.FULL or old is None:
        return replace(new, state=DocState.FULL)
    return Endpoint(
        entity=new.entity,
        display_text=new.display_text if new.display_text is not None else old.display_text,
        status=new.status if new.status is not None else old.status,
        joining_method=(new.joining_method if new.joining_method is not None
                        else old.joining_method),
        media=_merge_media(old.media, new.media),
    )


def _merge_user(old: User | None, new: User) -> User | None:
    if new.state is DocState.DELETED:
        return None
    if new.state is DocState.FULL or old is None:
        return replace(new, state=DocState.FULL,
                       endpoints=tuple(replace(e, state=DocState.FULL) for e in new.endpoints
                                       if e.state is not DocState.DELETED))
    endpoints = {e.entity: e for e in old.endpoints}
    for ep in new.endpoints:
        merged = _merge_endpoint(endpoints.get(ep.entity), ep)
        if merged is None:
            endpoints.pop(ep.entity, None)
        else:
            endpoints[ep.entity] = merged
    return User(
        entity=new.entity,
        display_text=new.display_text if new.display_text is not None else old.display_text,
        roles=new.roles if new.roles is not None else old.roles,
        endpoints=tuple(endpoints.values()),
    )


def apply_partial(current: ConferenceInfo, update: ConferenceInfo) -> ConferenceInfo:
    """RFC 4575 §4.6 subscriber processing: the state after ``update`` (full or partial).

    Elements without a ``state`` attribute (description, conference-state) replace; users and
    endpoints merge by ``entity``, media by ``id``; ``deleted`` removes.
    """
    if update.state is DocState.FULL:
        return update
    if update.entity != current.entity:
        raise ConferenceInfoError(f"update for {update.entity} applied to {current.entity}")
    users = {u.entity: u for u in current.users or ()}
    if update.users is not None:
        if update.users_state is DocState.FULL:
            users = {}
        for u in update.users:
            merged = _merge_user(users.get(u.entity), u)
            if merged is None:
                users.pop(u.entity, None)
            else:
                users[u.entity] = merged
    return ConferenceInfo(
        entity=current.entity,
        description=update.description or current.description,
        conference_state=update.conference_state or current.conference_state,
        users=tuple(users.values()),
        version=update.version,
    )


# ---------------------------------------------------------------------------------------------
# Version stream
# ---------------------------------------------------------------------------------------------


class ConferenceInfoStream:
    """Documents for one recipient: a full one first, then partials, ``version`` +1 each.

    Not thread-safe: one owner (e.g. the thread that sends the NOTIFYs).
    """

    def __init__(self) -> None:
        self._version = 0
        self._last: ConferenceInfo | None = None

    @property
    def version(self) -> int:
        """Version of the last document handed out (0 before the first)."""
        return self._version

    @property
    def last(self) -> ConferenceInfo | None:
        return self._last

    def _next_version(self) -> int:
        self._version = self._version + 1 if self._version < _MAX_UINT32 else 1
        return self._version

    def full(self, conf: ConferenceInfo) -> bytes:
        """The whole state (first NOTIFY, or after a refresh)."""
        doc = replace(conf, state=DocState.FULL, version=self._next_version())
        self._last = conf
        return render(doc)

    def update(self, conf: ConferenceInfo) -> bytes | None:
        """What changed since the last document (full if none yet); ``None`` if nothing did."""
        if self._last is None:
            return self.full(conf)
        partial = diff(self._last, conf)
        if partial is None:
            return None
        self._last = conf
        return render(replace(partial, version=self._next_version()))


# ---------------------------------------------------------------------------------------------
# Parsing received documents
# ---------------------------------------------------------------------------------------------


def _children(el: StdElement, tag: str) -> list[StdElement]:
    return [c for c in el if c.tag == _Q + tag]


def _child(el: StdElement, tag: str) -> StdElement | None:
    found = _children(el, tag)
    if len(found) > 1:
        raise ConferenceInfoError(f"<{tag}> appears {len(found)} times")
    return found[0] if found else None


def _text(el: StdElement, tag: str) -> str | None:
    c = _child(el, tag)
    return None if c is None else (c.text or "")


def _enum(cls: type[Any], value: str | None, what: str) -> Any:
    if value is None:
        return None
    try:
        return cls(value.strip())
    except ValueError:
        raise ConferenceInfoError(f"bad {what}: {value!r}") from None


def _state(el: StdElement) -> DocState:
    return _enum(DocState, el.get("state", "full"), "state")  # type: ignore[no-any-return]


def _bool_text(value: str | None) -> bool | None:
    if value is None:
        return None
    v = value.strip()
    if v in ("true", "1"):
        return True
    if v in ("false", "0"):
        return False
    raise ConferenceInfoError(f"bad boolean: {value!r}")


def _uint(value: str | None, what: str) -> int | None:
    if value is None:
        return None
    v = value.strip()
    if not v.isdigit() or int(v) > _MAX_UINT32:
        raise ConferenceInfoError(f"bad {what}: {value!r}")
    return int(v)


def _parse_uris(el: StdElement | None) -> tuple[UriEntry, ...]:
    if el is None:
        return ()
    out = []
    for entry in _children(el, "entry"):
        uri = _text(entry, "uri")
        if uri is None:
            raise ConferenceInfoError("uri entry without <uri>")
        out.append(UriEntry(uri.strip(), _text(entry, "display-text"), _text(entry, "purpose")))
    return tuple(out)


def _parse_endpoint(el: StdElement) -> Endpoint:
    entity = el.get("entity")
    if entity is None:
        raise ConferenceInfoError("<endpoint> without entity")
    media = []
    for m in _children(el, "media"):
        mid = m.get("id")
        if mid is None:
            raise ConferenceInfoError("<media> without id")
        media.append(Media(id=mid, type=_text(m, "type"), label=_text(m, "label"),
                           src_id=_text(m, "src-id"),
                           status=_enum(MediaStatus, _text(m, "status"), "media status"),
                           display_text=_text(m, "display-text")))
    return Endpoint(entity=entity, display_text=_text(el, "display-text"),
                    status=_enum(EndpointStatus, _text(el, "status"), "endpoint status"),
                    joining_method=_enum(JoiningMethod, _text(el, "joining-method"),
                                         "joining-method"),
                    media=tuple(media), state=_state(el))


def _parse_user(el: StdElement) -> User:
    entity = el.get("entity")
    if entity is None:
        raise ConferenceInfoError("<user> without entity")
    roles_el = _child(el, "roles")
    roles = None if roles_el is None else tuple(e.text or "" for e in _children(roles_el, "entry"))
    state = _state(el)
    if state is DocState.FULL and roles is None:
        roles = ()
    return User(entity=entity, display_text=_text(el, "display-text"), roles=roles,
                endpoints=tuple(_parse_endpoint(e) for e in _children(el, "endpoint")),
                state=state)


def parse(data: bytes, max_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES) -> ConferenceInfo:
    """A received conference-info document as the model.

    Refuses oversized input, DTDs, entity declarations and external references (defusedxml),
    and anything that is not a ``conference-info`` of our namespace.
    """
    if len(data) > max_bytes:
        raise ConferenceInfoError(f"document of {len(data)} bytes exceeds {max_bytes}")
    try:
        root = safe_fromstring(data, forbid_dtd=True, forbid_entities=True,
                                  forbid_external=True)
    except DefusedXmlException as exc:
        raise ConferenceInfoError(f"refused XML construct: {exc}") from None
    except Exception as exc:  # ParseError and friends: bad XML from the network
        raise ConferenceInfoError(f"not well-formed XML: {exc}") from None
    if root.tag != _Q + "conference-info":
        raise ConferenceInfoError(f"root element is {root.tag}, not conference-info")
    entity = root.get("entity")
    if entity is None:
        raise ConferenceInfoError("<conference-info> without entity")
    description = None
    d = _child(root, "conference-description")
    if d is not None:
        am = _child(d, "available-media")
        media = () if am is None else tuple(
            AvailableMedium(label=e.get("label") or "", type=_text(e, "type") or "",
                            status=_enum(MediaStatus, _text(e, "status"), "media status"))
            for e in _children(am, "entry"))
        description = Description(display_text=_text(d, "display-text"),
                                  subject=_text(d, "subject"),
                                  conf_uris=_parse_uris(_child(d, "conf-uris")),
                                  service_uris=_parse_uris(_child(d, "service-uris")),
                                  available_media=media)
    conf_state = None
    s = _child(root, "conference-state")
    if s is not None:
        conf_state = ConferenceStateInfo(user_count=_uint(_text(s, "user-count"), "user-count"),
                                         active=_bool_text(_text(s, "active")),
                                         locked=_bool_text(_text(s, "locked")))
    users_el = _child(root, "users")
    users = None if users_el is None else tuple(
        _parse_user(u) for u in _children(users_el, "user"))
    return ConferenceInfo(
        entity=entity, description=description, conference_state=conf_state, users=users,
        state=_state(root), version=_uint(root.get("version"), "version"),
        users_state=DocState.FULL if users_el is None else _state(users_el),
    )
