"""The operator's dial plan: where the bridge may place calls (``!dial``, ``!link <uri>``).

A room owner is a tenant, not the operator: without a plan, dial-out is toll fraud (any
number) and a port scanner of the internal network (any ``sip:`` URI, IP literals, ports,
``maddr=``/``transport=`` parameters, URI headers). So dial-out is off unless the operator
enables it, and then only numbers matching the operator's patterns (sent to the trunk) and
``sip:`` URIs naming one of the operator's domains (no port, no parameters, no headers, no
IP literal) are dialled, never our own SIP domain (a tenant could name a room like a phone
number and receive another tenant's call). The room learns one of four outcomes, never the
remote status or reason text. Pure: unit-tested; the node applies it and logs each attempt.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["answered", "busy", "no answer", "refused"]

#: header on every INVITE the bridge places; an INVITE that arrives carrying it is our own
#: dial-out routed back to us by a trunk (a tenant named a room like the dialled number):
#: refused with 482 instead of ringing another tenant's conference
LOOP_HEADER = "X-Sipmuc-Dialout"

_USER = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,%]{1,64}")
_NUMBER_JUNK = re.compile(r"[\s().\-/]")
_NUMBER = re.compile(r"\+?[0-9]{1,32}")


@dataclass(frozen=True, slots=True)
class DialPlan:
    """The operator's rules; build it once from the settings."""

    enabled: bool = False
    number_patterns: tuple[str, ...] = ()
    domains: frozenset[str] = frozenset()
    trunk_domain: str = ""  # number targets become sip:<number>@<trunk_domain>
    own_domains: frozenset[str] = frozenset()  # our SIP domain and addresses: never dialled
    per_room: int = 2
    per_node: int = 10

    @classmethod
    def create(
        cls,
        *,
        enabled: bool,
        number_patterns: Iterable[str] = (),
        domains: Iterable[str] = (),
        trunk_domain: str = "",
        own_domains: Iterable[str] = (),
        per_room: int = 2,
        per_node: int = 10,
    ) -> DialPlan:
        return cls(
            enabled=enabled,
            number_patterns=tuple(number_patterns),
            domains=frozenset(d.lower().rstrip(".") for d in domains),
            trunk_domain=trunk_domain.lower(),
            own_domains=frozenset(d.lower().strip("[]") for d in own_domains if d),
            per_room=per_room,
            per_node=per_node,
        )


@dataclass(frozen=True, slots=True)
class DialAllowed:
    uri: str  # exactly what is dialled
    host: str  # the host part (for the resolver check when there is no trunk proxy)


@dataclass(frozen=True, slots=True)
class DialRefused:
    message: str  # for the room: says which rule, never anything about the network
    why: str  # for the operator's log


DialDecision = DialAllowed | DialRefused


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def is_public_address(address: str) -> bool:
    """False for loopback, private, link-local, multicast, reserved and unspecified
    addresses (where a dialled call would probe the operator's own network)."""
    try:
        addr = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_global and not addr.is_multicast


def check_dial(
    plan: DialPlan, target: str, *, is_number: bool, room_dials: int, node_dials: int
) -> DialDecision:
    """May this room dial ``target`` now? ``room_dials``/``node_dials``: dial-outs of the
    room and of the node that are ringing or up."""
    if not plan.enabled:
        return DialRefused("Dial-out is not enabled on this service.", "disabled")
    if room_dials >= plan.per_room:
        return DialRefused(
            f"This room already has {room_dials} dialled call(s) (at most {plan.per_room}).",
            "room cap",
        )
    if node_dials >= plan.per_node:
        return DialRefused("Too many dialled calls on this service right now; try later.",
                           "node cap")  # fmt: skip
    if is_number:
        return _number(plan, target)
    return _sip_uri(plan, target)


def _number(plan: DialPlan, target: str) -> DialDecision:
    number = _NUMBER_JUNK.sub("", target)
    if not _NUMBER.fullmatch(number):
        return DialRefused("That is not a telephone number.", "bad number")
    if not plan.trunk_domain or not any(re.fullmatch(p, number) for p in plan.number_patterns):
        return DialRefused("This service does not call that number.", "number not in plan")
    if plan.trunk_domain in plan.own_domains:
        return DialRefused("This service does not call that number.", "trunk is ourselves")
    return DialAllowed(f"sip:{number}@{plan.trunk_domain}", plan.trunk_domain)


def _sip_uri(plan: DialPlan, target: str) -> DialDecision:
    refused = DialRefused("This service does not call that address.", "")
    scheme, sep, rest = target.strip().partition(":")
    scheme = scheme.lower()
    if not sep or scheme not in ("sip", "sips"):
        return _why(refused, "not a sip: URI")
    if any(c in rest for c in ";?>< \t\r\n"):
        return _why(refused, "URI parameters or headers")
    user, at, host = rest.rpartition("@")
    if not at or not _USER.fullmatch(user):
        return _why(refused, "no or bad user part")
    if ":" in host or host.startswith("["):
        return _why(refused, "explicit port or IPv6 literal")
    host = host.lower().rstrip(".")
    if is_ip_literal(host):
        return _why(refused, "IP literal")
    if host in plan.own_domains:
        return DialRefused("The bridge does not call its own conferences.", "own domain")
    if host not in plan.domains:
        return _why(refused, "domain not in plan")
    return DialAllowed(f"{scheme}:{user}@{host}", host)


def _why(refused: DialRefused, why: str) -> DialRefused:
    return DialRefused(refused.message, why)


def outcome_of(status: int, *, timed_out: bool = False) -> Outcome:
    """What the room may learn of a dialled call that did not get answered."""
    if timed_out or status in (408, 480, 487):
        return "no answer"
    if status in (486, 600, 603):
        return "busy"
    return "refused"
