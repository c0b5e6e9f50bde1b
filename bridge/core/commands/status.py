"""Rendering of the ``!status`` reply from a :class:`~bridge.core.commands.model.RoomView`.

Pure text: the planner (:mod:`.plan`) wraps it into the command's reply.
"""

from __future__ import annotations

from bridge.core.commands.model import RoomView


def clock(seconds: float) -> str:
    """A duration for people: ``42 s``, ``7 min``, ``1 h 05 min``."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def status_text(view: RoomView, now: float, prefix: str = "!") -> str:
    """The reply to ``!status``: the conference, who is on the call and how, who only chats."""
    if not view.linked:
        return f"This room is not linked to a conference; an owner can {prefix}link it."
    where = (view.external_uri and f"dialled into {view.external_uri}") or f"dial {view.sip_uri}"
    lines = [
        f"Conference {view.conference} ({where}); "
        f"{'locked' if view.locked else 'open to new callers'}; "
        f"PIN {'on' if view.pin_set else 'off'}."
    ]
    callers = sorted((p for p in view.participants if p.in_call), key=lambda p: (p.since, p.nick))
    if not callers:
        lines.append("Nobody is on the call.")
    else:
        lines.append(f"On the call ({len(callers)}):")
        for p in callers:
            bits = ["chat and phone" if not p.puppet else "phone"]
            if p.mute:
                bits.append("muted by themself" if p.mute == "self" else "muted by a moderator")
            if p.talking:
                bits.append("talking")
            if p.privilege != "participant":
                bits.append(p.privilege)
            if p.codec:
                bits.append(p.codec)
            if p.since:
                bits.append(f"for {clock(now - p.since)}")
            if len(p.leg_ids) > 1:
                bits.append(f"{len(p.leg_ids)} calls")
            lines.append(f"  {p.nick}: " + ", ".join(bits))
    chat = sorted(
        p.nick for p in view.participants if not p.in_call and p.nick != view.control_nick
    )
    if chat:
        lines.append(f"In the chat only ({len(chat)}): " + ", ".join(chat[:30])
                     + (" …" if len(chat) > 30 else ""))  # fmt: skip
    return "\n".join(lines)
