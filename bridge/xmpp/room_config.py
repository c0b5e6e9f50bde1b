"""Room configuration: advertise (or withdraw) the conference's SIP URI in the MUC's config.

Reads the owner form (XEP-0045 §10.2), lets the pure :func:`bridge.xmpp.forms.plan_room_config`
decide where the URI goes (``audio-video-uri`` when the server has the module, and the room
description) and whether the room is moderated, and submits only what changed.
"""

from __future__ import annotations

from typing import Any

from slixmpp import JID

from bridge.logs import get_logger
from bridge.xmpp.forms import (
    ROOM_DESCRIPTION,
    ROOMCONFIG_FORM_TYPE,
    Advertised,
    AdvertisePolicy,
    plan_room_config,
)
from bridge.xmpp.host import RoomHost

log = get_logger(__name__)


async def advertise(host: RoomHost, room_jid: JID, sip_uri: str, *, created: bool) -> Advertised:
    """Advertise ``sip_uri`` in ``room_jid`` (``""``: withdraw it); the bridge must own the
    room. A newly ``created`` room is always submitted (that unlocks it)."""
    plugin = host.plugin["xep_0045"]
    form = await plugin.get_room_config(room_jid, ifrom=host.control_jid)
    all_fields = form.get_fields()  # type: ignore[no-untyped-call]
    fields = {var: field for var, field in all_fields.items() if var}
    values = {var: field_text(field) for var, field in fields.items()}
    description = fields.get(ROOM_DESCRIPTION)
    multiline = description is not None and description["type"] == "text-multi"
    settings = host.settings
    policy = AdvertisePolicy(
        label=settings.dial_in_label,
        in_description=settings.dial_in_description,
        moderated=settings.moderated_rooms,
    )
    plan = plan_room_config(values, sip_uri, multiline_description=multiline, policy=policy)
    if sip_uri and plan.advertised is Advertised.DESCRIPTION:
        host.note_module_missing(str(room_jid))
    if plan.changes or created:
        forms = host.plugin["xep_0004"]
        submit = forms.make_form(ftype="submit")  # type: ignore[no-untyped-call]
        submit.add_field(var="FORM_TYPE", ftype="hidden", value=ROOMCONFIG_FORM_TYPE)
        for var, value in plan.changes.items():
            submit.add_field(var=var, ftype=fields[var]["type"], value=value)
        await plugin.set_room_config(room_jid, submit, ifrom=host.control_jid)
    log.info(
        "room.advertised",
        room=str(room_jid),
        how=str(plan.advertised) or "not advertised",
        changed=sorted(plan.changes),
        moderated=plan.moderated,
    )
    return plan.advertised


def field_text(field: Any) -> str:
    """A form field's value as the text the planner compares (lists joined by lines)."""
    value = field["value"]
    if isinstance(value, list | tuple):
        return "\n".join(str(v) for v in value)
    if isinstance(value, bool):
        return "1" if value else "0"
    return "" if value is None else str(value)


__all__ = ["advertise", "field_text"]
