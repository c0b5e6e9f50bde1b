"""Room configuration planning: how the SIP URI gets into the room (pure, no I/O).

Where the server runs our Prosody module the owner form has an ``audio-video-uri`` field and
we set it (clients that read disco#info offer "join the call"). Most clients show neither
that field nor any other extra room-info, so the URI also goes on its own line of the room
description ("Join by phone: sip:…"), leaving the owner's text alone; a later run replaces
only that line. A linked room is made moderated when newcomers keep their voice there (see
:func:`plan_room_config`), so that voice, which the bridge mirrors to the call, means what
clients show.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

AUDIO_VIDEO_URI = "audio-video-uri"
ROOM_DESCRIPTION = "muc#roomconfig_roomdesc"
MODERATED = "muc#roomconfig_moderatedroom"
MEMBERS_BY_DEFAULT = "members_by_default"  # ejabberd: newcomers are participants
ROOMCONFIG_FORM_TYPE = "http://jabber.org/protocol/muc#roomconfig"
ROOMINFO_FORM_TYPE = "http://jabber.org/protocol/muc#roominfo"
DIAL_IN_LABEL = "Join by phone: "
LEGACY_LABELS = ("Join the call: ",)  # what earlier versions wrote
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
    moderated: bool | None = None  # what the plan leaves the room as (None: not ours to say)


@dataclass(frozen=True, slots=True)
class AdvertisePolicy:
    """Settings that shape the plan (``bridge.config.XmppSettings``)."""

    label: str = DIAL_IN_LABEL
    in_description: bool = True
    moderated: bool = True


def dial_in_line(sip_uri: str, label: str = DIAL_IN_LABEL) -> str:
    return f"{label}{sip_uri}"


def _ours(part: str, label: str) -> bool:
    text = part.strip()
    return any(text.startswith(lab.strip()) for lab in (label, *LEGACY_LABELS))


def _separator(multiline: bool) -> str:
    return "\n" if multiline else SINGLE_LINE_SEPARATOR


def merge_description(
    current: str, sip_uri: str, *, multiline: bool = False, label: str = DIAL_IN_LABEL
) -> str:
    """The description with our dial-in part set to ``sip_uri`` (owner's text untouched).

    A text-single field (Prosody, XEP-0004) must not contain line breaks, so there the part
    is joined with `` · `` instead of a new line.
    """
    sep = _separator(multiline)
    parts = current.split(sep) if current else []
    ours = dial_in_line(sip_uri, label)
    for index, part in enumerate(parts):
        if _ours(part, label):
            parts[index] = ours
            return sep.join(parts)
    if sip_uri in current:
        return current  # the owner already wrote it in their own words
    return sep.join([*parts, ours]) if current.strip() else ours


def strip_description(current: str, *, multiline: bool = False, label: str = DIAL_IN_LABEL) -> str:
    """The description without our dial-in part (unlink)."""
    sep = _separator(multiline)
    kept = [p for p in current.split(sep) if not _ours(p, label)]
    return sep.join(kept).rstrip()


def plan_room_config(
    form_values: Mapping[str, str],
    sip_uri: str,
    *,
    multiline_description: bool = False,
    policy: AdvertisePolicy = AdvertisePolicy(),
) -> ConfigPlan:
    """Decide the submission from the owner form's current values (var → text value).

    ``sip_uri`` empty means "unlinked": clear what we advertised before. Moderation: a
    linked room is moderated only where newcomers keep their voice, i.e. where the server
    has our module (its default-role hook) or ejabberd's ``members_by_default`` (set on);
    elsewhere (stock Prosody) a moderated room would make every caller and guest a visitor,
    muted, so the room stays as it is. Unlinking makes the room unmoderated again.
    """
    ml = multiline_description
    changes: dict[str, str] = {}
    has_module = AUDIO_VIDEO_URI in form_values
    if has_module and form_values[AUDIO_VIDEO_URI] != sip_uri:
        changes[AUDIO_VIDEO_URI] = sip_uri
    description = form_values.get(ROOM_DESCRIPTION)
    in_description = description is not None and (policy.in_description or not has_module)
    if description is not None:
        if sip_uri and in_description:
            wanted = merge_description(description, sip_uri, multiline=ml, label=policy.label)
        else:
            wanted = strip_description(description, multiline=ml, label=policy.label)
        if wanted != description:
            changes[ROOM_DESCRIPTION] = wanted
    moderated: bool | None = None
    keeps_voice = has_module or MEMBERS_BY_DEFAULT in form_values
    if policy.moderated and MODERATED in form_values and keeps_voice:
        moderated = bool(sip_uri)
        if form_values[MODERATED] not in ("1", "true") and moderated:
            changes[MODERATED] = "1"
            if MEMBERS_BY_DEFAULT in form_values and form_values[MEMBERS_BY_DEFAULT] not in (
                "1",
                "true",
            ):
                changes[MEMBERS_BY_DEFAULT] = "1"
        elif form_values[MODERATED] in ("1", "true") and not moderated:
            changes[MODERATED] = "0"
    if has_module and sip_uri:
        advertised = Advertised.AUDIO_VIDEO_URI
    elif sip_uri and in_description:
        advertised = Advertised.DESCRIPTION
    else:
        advertised = Advertised.NONE
    return ConfigPlan(advertised, changes, moderated)


__all__ = [
    "AUDIO_VIDEO_URI",
    "DIAL_IN_LABEL",
    "MEMBERS_BY_DEFAULT",
    "MODERATED",
    "ROOMCONFIG_FORM_TYPE",
    "ROOMINFO_FORM_TYPE",
    "ROOM_DESCRIPTION",
    "AdvertisePolicy",
    "Advertised",
    "ConfigPlan",
    "dial_in_line",
    "merge_description",
    "plan_room_config",
    "strip_description",
]
