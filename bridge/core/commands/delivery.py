"""Where a command's reply goes: the whole room, or the issuer alone.

A room sees what changes the room (a mute, a kick, a lock: moderation is public), but not
what only the issuer asked for: ``!help`` and ``!status`` are long, and refusals and errors
concern one person. Replying to those in the room would let anyone flood it by typing
``!help`` (issue 19), and would shame people for typos.
"""

from __future__ import annotations

from bridge.core.commands.model import CommandReply

#: commands whose answer is information for the issuer, never news for the room
PRIVATE_COMMANDS = frozenset({"help", "status"})


def reply_privately(command: str, reply: CommandReply, max_lines: int) -> bool:
    """True when ``reply`` to ``command`` goes to the issuer only (see the module doc)."""
    if command in PRIVATE_COMMANDS or not reply.ok:
        return True
    return reply.text.count("\n") + 1 > max_lines


__all__ = ["PRIVATE_COMMANDS", "reply_privately"]
