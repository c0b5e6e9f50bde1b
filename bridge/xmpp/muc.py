"""Reading MUC presence payloads (XEP-0045 ``muc#user``), pure over ElementTree elements.

slixmpp's MUC stanza plugin covers the item; we also need actor, reason, destroy and the
error of a failed join (Prosody's join-error presence has no ``muc`` child, DESIGN §5), so one
small parser returns everything typed.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.etree.ElementTree import Element

NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_DELAY = "urn:xmpp:delay"
NS_OCCUPANT_ID = "urn:xmpp:occupant-id:0"  # XEP-0421

# XEP-0045 status codes we act on.
SELF_PRESENCE = 110
ROOM_CREATED = 201
BANNED = 301
NICK_CHANGED = 303
KICKED = 307
REMOVED_AFFILIATION = 321
REMOVED_MEMBERS_ONLY = 322
SHUTDOWN = 332
REMOVED_ERROR = 333


@dataclass(frozen=True, slots=True)
class MucPresence:
    """The ``muc#user`` facts of one occupant presence."""

    nick: str
    available: bool
    affiliation: str = "none"
    role: str = "none"
    jid: str = ""  # real JID, when the room shows it to us
    new_nick: str = ""  # with status 303
    status_codes: frozenset[int] = frozenset()
    actor: str = ""
    reason: str = ""
    destroyed: bool = False
    destroy_reason: str = ""
    occupant_id: str = ""  # XEP-0421, when the MUC service stamps it

    @property
    def is_self(self) -> bool:
        return SELF_PRESENCE in self.status_codes


@dataclass(frozen=True, slots=True)
class StanzaError:
    condition: str
    text: str = ""
    type: str = ""


def _attr(element: Element | None, name: str, default: str = "") -> str:
    if element is None:
        return default
    return element.get(name, default)


def parse_muc_presence(xml: Element, nick: str) -> MucPresence:
    """The occupant facts from a presence sent by ``room/nick``."""
    available = xml.get("type", "available") != "unavailable"
    x = xml.find(f"{{{NS_MUC_USER}}}x")
    if x is None:
        return MucPresence(nick=nick, available=available, occupant_id=occupant_id(xml))
    item = x.find(f"{{{NS_MUC_USER}}}item")
    actor = item.find(f"{{{NS_MUC_USER}}}actor") if item is not None else None
    reason = item.find(f"{{{NS_MUC_USER}}}reason") if item is not None else None
    destroy = x.find(f"{{{NS_MUC_USER}}}destroy")
    destroy_reason = destroy.find(f"{{{NS_MUC_USER}}}reason") if destroy is not None else None
    codes: set[int] = set()
    for status in x.findall(f"{{{NS_MUC_USER}}}status"):
        try:
            codes.add(int(status.get("code", "")))
        except ValueError:
            continue
    return MucPresence(
        nick=nick,
        available=available,
        affiliation=_attr(item, "affiliation", "none"),
        role=_attr(item, "role", "none"),
        jid=_attr(item, "jid"),
        new_nick=_attr(item, "nick"),
        status_codes=frozenset(codes),
        actor=_attr(actor, "nick") or _attr(actor, "jid"),
        reason=(reason.text or "").strip() if reason is not None else "",
        destroyed=destroy is not None,
        destroy_reason=(destroy_reason.text or "").strip() if destroy_reason is not None else "",
        occupant_id=occupant_id(xml),
    )


def occupant_id(xml: Element) -> str:
    """The XEP-0421 occupant id the MUC service stamped on a presence or message ('' if
    none). Only the service's own stamp counts: it strips any a client sent."""
    element = xml.find(f"{{{NS_OCCUPANT_ID}}}occupant-id")
    return element.get("id", "")[:128] if element is not None else ""


def parse_error(xml: Element) -> StanzaError:
    """The defined condition of a stanza's ``<error/>``, whatever namespace the stanza uses."""
    error = None
    for child in xml:
        if child.tag == "error" or child.tag.endswith("}error"):
            error = child
            break
    if error is None:
        return StanzaError("undefined-condition")
    condition, text = "undefined-condition", ""
    for child in error:
        if child.tag == f"{{{NS_STANZAS}}}text":
            text = (child.text or "").strip()
        elif child.tag.startswith(f"{{{NS_STANZAS}}}"):
            condition = child.tag.split("}", 1)[1]
    return StanzaError(condition, text, error.get("type", ""))


def is_delayed(xml: Element) -> bool:
    """History replayed by the room (XEP-0203 delay) rather than a live message."""
    return xml.find(f"{{{NS_DELAY}}}delay") is not None


JOIN_ERROR_HINTS = {
    "conflict": "the nick is taken by someone else",
    "forbidden": "banned from the room (affiliation outcast)",
    "not-authorized": "the room is password protected",
    "registration-required": "the room is members-only and the bridge is not a member",
    "service-unavailable": "the room is full",
    "not-allowed": "room creation is restricted on this service",
    "item-not-found": "the room does not exist (and may not be created)",
    "jid-malformed": "the nick is not acceptable",
    "not-acceptable": "the nick is not acceptable (reserved or badly formed)",
}


def join_error_hint(condition: str) -> str:
    return JOIN_ERROR_HINTS.get(condition, "the room refused the join")
