"""Control and event messages between a supervisor and its mixer process (pure, picklable).

Commands (supervisor → mixer) name legs by their ring *slot*, which the supervisor chose
when it assigned the slot in the shared segment it owns. :class:`LegTable` is the
supervisor's record of every attached leg with its current mute/deaf/gain, so that a
restarted mixer process gets the same legs back (:meth:`LegTable.replay`) while the SIP
workers keep their ring ports. :func:`apply` turns one command into a call on a
:class:`~mixer.node.MixerNode` (the mixer process's only use of a command).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Protocol, TypeAlias

from mixer.clock import ClockStats
from mixer.engine import ConferenceKey, MixerEvent
from mixer.frames import check_rate


@dataclass(frozen=True, slots=True)
class Attach:
    """Mix the leg in ``slot`` (already assigned in the segment) into ``conference``."""

    slot: int
    conference: ConferenceKey
    rate: int
    gain: float = 1.0
    muted: bool = False
    deaf: bool = False


@dataclass(frozen=True, slots=True)
class Detach:
    """Stop mixing the leg in ``slot`` (its slot was released in the segment)."""

    slot: int


@dataclass(frozen=True, slots=True)
class SetMute:
    """Mute or unmute what the leg says (it keeps hearing the others)."""

    slot: int
    muted: bool


@dataclass(frozen=True, slots=True)
class SetDeaf:
    """Give the leg silence instead of its mix (it is still heard unless muted)."""

    slot: int
    deaf: bool


@dataclass(frozen=True, slots=True)
class SetGain:
    """Linear gain on what the leg says."""

    slot: int
    gain: float


@dataclass(frozen=True, slots=True)
class Stop:
    """End the mixer process cleanly (the supervisor shuts down)."""


Command: TypeAlias = Attach | Detach | SetMute | SetDeaf | SetGain | Stop


@dataclass(frozen=True, slots=True)
class Ready:
    """The mixer process attached to the segment and ticks. ``realtime_threads``: (thread
    id, SCHED_FIFO priority) it wants but could not set itself (no CAP_SYS_NICE): the
    supervisor sets them; the clock's stats say what the thread runs at."""

    pid: int
    epoch: int
    realtime_threads: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Events:
    """Talker and dominant-speaker changes of one tick."""

    events: tuple[MixerEvent, ...]


@dataclass(frozen=True, slots=True)
class Status:
    """Periodic health: clock counters, tick durations since the last status, levels."""

    clock: ClockStats | None
    durations: tuple[float, ...]
    levels: dict[int, tuple[float, float]]


@dataclass(frozen=True, slots=True)
class Refused:
    """A command the mixer could not apply (the reason is in ``error``)."""

    command: Command
    error: str


Report: TypeAlias = Ready | Events | Status | Refused


class NodeLike(Protocol):
    """The part of :class:`~mixer.node.MixerNode` that commands drive."""

    def adopt_leg(
        self,
        slot: int,
        conference: ConferenceKey,
        rate: int,
        gain: float = 1.0,
        *,
        muted: bool = False,
        deaf: bool = False,
    ) -> None: ...

    def drop_leg(self, leg: int) -> None: ...

    def set_mute(self, leg: int, muted: bool) -> None: ...

    def set_deaf(self, leg: int, deaf: bool) -> None: ...

    def set_gain(self, leg: int, gain: float) -> None: ...


def apply(node: NodeLike, command: Command) -> None:
    """Execute one command on the mixer (raises on a bad one; :class:`Stop` is the caller's)."""
    if isinstance(command, Attach):
        node.adopt_leg(
            command.slot,
            command.conference,
            command.rate,
            command.gain,
            muted=command.muted,
            deaf=command.deaf,
        )
    elif isinstance(command, Detach):
        node.drop_leg(command.slot)
    elif isinstance(command, SetMute):
        node.set_mute(command.slot, command.muted)
    elif isinstance(command, SetDeaf):
        node.set_deaf(command.slot, command.deaf)
    elif isinstance(command, SetGain):
        node.set_gain(command.slot, command.gain)
    elif isinstance(command, Stop):
        raise ValueError("Stop ends the command loop; it is not applied to the mixer")
    else:  # pragma: no cover - exhaustive for type checkers, guards unpickled junk
        raise TypeError(f"not a mixer command: {command!r}")


class LegTable:
    """The supervisor's truth about attached legs: validates commands and replays them."""

    def __init__(self) -> None:
        self._legs: dict[int, Attach] = {}

    def __contains__(self, slot: int) -> bool:
        return slot in self._legs

    def __len__(self) -> int:
        return len(self._legs)

    def get(self, slot: int) -> Attach | None:
        return self._legs.get(slot)

    def record(self, command: Command) -> None:
        """Update the table for a command about to be sent (raises on a bad command, so
        that nothing is sent and the caller hears why)."""
        if isinstance(command, Attach):
            if command.slot in self._legs:
                raise ValueError(f"slot {command.slot} is already attached")
            check_rate(command.rate)
            _check_gain(command.gain)
            self._legs[command.slot] = command
            return
        if isinstance(command, Stop):
            return
        leg = self._legs.get(command.slot)
        if leg is None:
            raise KeyError(command.slot)
        if isinstance(command, Detach):
            del self._legs[command.slot]
        elif isinstance(command, SetMute):
            self._legs[command.slot] = replace(leg, muted=command.muted)
        elif isinstance(command, SetDeaf):
            self._legs[command.slot] = replace(leg, deaf=command.deaf)
        else:
            _check_gain(command.gain)
            self._legs[command.slot] = replace(leg, gain=command.gain)

    def replay(self) -> list[Attach]:
        """What a fresh mixer process needs to mix every current leg as it was."""
        return list(self._legs.values())


def _check_gain(gain: float) -> None:
    if not (math.isfinite(gain) and gain >= 0.0):  # the engine's rule, checked before sending
        raise ValueError(f"gain must be finite and ≥ 0, got {gain}")
