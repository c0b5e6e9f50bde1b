"""Errors of the state layer, with messages meant for people (operators, moderators)."""

from __future__ import annotations


class StateUnavailable(Exception):
    """Redis cannot be reached (down, paused, loading, timed out): nothing was recorded.

    ``str(error)`` is a complete sentence that can be shown to the moderator or caller
    whose change was refused, and logged for the operator.
    """

    def __init__(self, what: str, where: str, cause: BaseException | str) -> None:
        self.what = what
        self.where = where
        self.cause = cause
        detail = (str(cause) or type(cause).__name__) if isinstance(cause, BaseException) else cause
        super().__init__(
            f"cannot {what}: the moderation store ({where}) is unreachable ({detail}); "
            "nothing was changed, please try again in a moment"
        )


class Fenced(Exception):
    """This node no longer owns the room (its lease expired and another node took it, or
    the fencing token is stale): the write was rejected so the new owner's truth stands."""

    def __init__(self, room: str, token: int | None, current: str) -> None:
        self.room = room
        self.token = token
        self.current = current
        super().__init__(
            f"room {room!r}: write with fencing token {token} rejected "
            f"(current lease token: {current or 'none'}); another node owns the room"
        )


class NotReplicated(StateUnavailable):
    """The write reached the primary but not the replicas it must reach (Redis ``WAIT``
    fell short): a failover now could lose it, so it is not acknowledged. The engine queues
    it and writes it again (idempotent by event id) until it is replicated."""

    def __init__(self, what: str, where: str, cause: BaseException | str) -> None:
        super().__init__(what, where, cause)
        Exception.__init__(
            self,
            f"cannot {what} for sure: the moderation store ({where}) has not copied it to a "
            f"replica yet ({cause}); it is kept and written again until it is",
        )


class OutboxFull(StateUnavailable):
    """Redis is down and the outbox of changes waiting for it is full."""


__all__ = ["Fenced", "NotReplicated", "OutboxFull", "StateUnavailable"]
