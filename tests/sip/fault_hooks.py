"""Test-only worker hooks that provoke, on demand, faults seen in long runs.

``install_collect``: a full cyclic collection on the pjsua2 thread (a worker collects by
generations, so an old reference cycle may be freed minutes later: this makes it now).
``install_forget``: detach every call from its pjsua2 wrapper (what a late ``~Call`` did).
``install_fill``: take every free port of the conference bridge, then give them back.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

from bridge.sip import pj as pjw
from bridge.sip.worker import HookContext


@dataclass(frozen=True)
class CollectNow:
    pass


@dataclass(frozen=True)
class Done:
    objects: int


def install_collect(ctx: HookContext) -> None:
    ctx.on_control(CollectNow, lambda _msg: ctx.emit(Done(gc.collect())))


@dataclass(frozen=True)
class ForgetCalls:
    """Detach every call from its pjsua2 wrapper, as the late ``~Call`` used to."""


def install_forget(ctx: HookContext) -> None:
    lib = ctx.library()

    def forget(_msg: ForgetCalls) -> None:
        for call_id in range(ctx.spec.calls):
            lib.pjsua_call_set_user_data(call_id, None)
        ctx.emit(Done(0))

    ctx.on_control(ForgetCalls, forget)


@dataclass(frozen=True)
class FillConference:
    """Take every free port of the worker's conference bridge (as ports that pjmedia frees
    only at its next ticks do when calls churn during a stall)."""


@dataclass(frozen=True)
class EmptyConference:
    """Give back the ports FillConference took."""


def install_fill(ctx: HookContext) -> None:
    held: list[pjw.FramePort] = []

    def fill(_msg: FillConference) -> None:
        while True:
            try:
                held.append(pjw.FramePort(f"filler{len(held)}"))
            except pjw.pj.Error:
                break
        ctx.emit(Done(len(held)))

    def empty(_msg: EmptyConference) -> None:
        pjw.bury_ports(held)
        ctx.emit(Done(0))

    ctx.on_control(FillConference, fill)
    ctx.on_control(EmptyConference, empty)
