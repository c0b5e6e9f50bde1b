"""Room configuration planning: how the SIP URI gets into the room (pure, no I/O).

Where the server runs our Prosody module the owner form has an ``audio-video-uri`` field and
we set it. Elsewhere (stock Prosody, ejabberd, …) the URI goes on its own line at the end of
the room description, leaving the owner's text alone; a later run replaces only that line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

AUDIO_VIDEO_URI = "audio-video-uri"
ROOM_DESCRIPTION = "muc#roomconfig_roomdesc"
ROOMCONFIG_FORM_TYPE = "http://jabber.org/protocol/muc#roomconfig"
ROOMINFO_FORM_TYPE = "http://jabber.org/protocol/muc#roominfo"
DIAL_IN_LABEL = "Join the call: "
SINGLE_LINE_SEPARATOR = " · "


class Advertised(StrEnum):
    AUDIO_VIDEO_URI = "audio-video-uri"
    DESCRIPTION = "description"
    NONE = ""


@dataclass(frozen=True, slots=True)
class ConfigPlan:
    """What to submit (``changes``: var → value) and how the URI ends up advertised."""

    advertised: Advertised
    changes: dict[str, str] = field(default_factory=dict)


def dial_in_line(sip_uri: str) -> str:
    return f"{DIAL_IN_LABEL}{sip_uri}"


def _separator(multiline: bool) -> str:
    return "\n" if multiline else SINGLE_LINE_SEPARATOR


def merge_description(current: str, sip_uri: str, *, multiline: bool = False) -> str:
    """The description with our dial-in part set to ``sip_uri`` (owner's text untouched).

    A text-single field (Prosody, XEP-0004) must not contain line breaks, so there the part
    is joined with `` · `` instead of a new line.
    """
    sep = _separator(multiline)
    parts = current.split(sep) if current else []
    ours = dial_in_line(sip_uri)
    for index, part in enumerate(parts):
        if part.strip().startswith(DIAL_IN_LABEL):
            parts[index] = ours
            return sep.join(parts)
    if sip_uri in current:
        return current  # the owner already wrote it in their own words
    return sep.join([*parts, ours]) if current.strip() else ours


def strip_description(current: str, *, multiline: bool = False) -> str:
    """The description without our dial-in part (unlink, or the module became available)."""
    sep = _separator(multiline)
    kept = [p for p in current.split(sep) if not p.strip().startswith(DIAL_IN_LABEL)]
    return sep.join(kept).rstrip()


def plan_room_config(
    form_values: Mapping[str, str], sip_uri: str, *, multiline_description: bool = False
) -> ConfigPlan:
    """Decide the submission from the owner form's current values (var → text value).

    ``sip_uri`` empty means "unlinked": clear what we advertised before.
    """
    ml = multiline_description
    changes: dict[str, str] = {}
    description = form_values.get(ROOM_DESCRIPTION)
    if AUDIO_VIDEO_URI in form_values:
        if form_values[AUDIO_VIDEO_URI] != sip_uri:
            changes[AUDIO_VIDEO_URI] = sip_uri
        if description is not None and strip_description(description, multiline=ml) != description:
            changes[ROOM_DESCRIPTION] = strip_description(description, multiline=ml)
        return ConfigPlan(Advertised.AUDIO_VIDEO_URI if sip_uri else Advertised.NONE, changes)
    if description is None:
        return ConfigPlan(Advertised.NONE)
    if sip_uri:
        wanted = merge_description(description, sip_uri, multiline=ml)
    else:
        wanted = strip_description(description, multiline=ml)
    if wanted != description:
        changes[ROOM_DESCRIPTION] = wanted
    return ConfigPlan(Advertised.DESCRIPTION if sip_uri else Advertised.NONE, changes)


__all__ = [
    "AUDIO_VIDEO_URI",
    "DIAL_IN_LABEL",
    "ROOMCONFIG_FORM_TYPE",
    "ROOMINFO_FORM_TYPE",
    "ROOM_DESCRIPTION",
    "Advertised",
    "ConfigPlan",
    "dial_in_line",
    "merge_description",
    "plan_room_config",
    "strip_description",
]
