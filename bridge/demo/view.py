"""What the demo shows: one model (:class:`Board`) and two ways to show it.

* :class:`LiveView` (a terminal): a rich screen redrawn four times a second — the steps, who
  is in the meeting (phone or chat, role, muted, talking, level spoken and level in the mix),
  the room's chat, what clients discover (disco#info, the latest conference-info NOTIFY) and
  how to connect your own clients.
* :class:`PlainView` (stdout is not a terminal, or ``--plain``): one timestamped line per step
  and per event, so a log, a CI job or a test can read what happened.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text


@dataclass
class Step:
    title: str
    status: str = "pending"  # pending, running, done, failed
    detail: str = ""


@dataclass
class Person:
    """One row of the meeting table."""

    name: str
    side: str  # "phone" or "chat"
    role: str = ""
    muted: bool = False
    talking: bool = False
    spoken: float = 0.0  # smoothed power, full scale = 1.0
    in_mix: float = 0.0
    key: str = ""  # stable identity (a call's leg id, a chat nick) while the name may change


@dataclass
class Board:
    """Everything on screen; the scenario writes it, the views read it."""

    title: str = "sipmuc-bridge demo"
    started: float = field(default_factory=time.monotonic)
    steps: list[Step] = field(default_factory=list)
    people: list[Person] = field(default_factory=list)
    chat: list[tuple[str, str]] = field(default_factory=list)
    roominfo: dict[str, str] = field(default_factory=dict)
    notify_summary: str = ""
    notify_count: int = 0
    events: list[str] = field(default_factory=list)
    footer: str = ""

    def elapsed(self) -> float:
        return time.monotonic() - self.started


SILENT = 1e-9  # -90 dBFS


def db(power: float) -> str:
    """Power (full scale = 1.0) as dBFS text; exact zero is "silent"."""
    if power <= SILENT:
        return "silent"
    return f"{10 * math.log10(power):5.1f} dBFS"


def _bar(power: float, width: int = 12) -> Text:
    if power <= SILENT:
        return Text("·" * width, style="dim")
    level = max(0.0, min(1.0, (10 * math.log10(power) + 60) / 60))  # -60..0 dBFS
    filled = round(level * width)
    return Text("█" * filled, style="green") + Text("·" * (width - filled), style="dim")


class PlainView:
    """Line-oriented progress for non-terminals: ``[  12.3s] message``."""

    def __init__(self, board: Board, out: TextIO) -> None:
        self.board = board
        self.out = out

    def __enter__(self) -> PlainView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.out.flush()

    def line(self, text: str) -> None:
        for part in text.splitlines() or [""]:
            self.out.write(f"[{self.board.elapsed():6.1f}s] {part}\n")
        self.out.flush()

    def refresh(self) -> None:
        pass


class LiveView:
    """A full-screen-ish rich display, redrawn from the board."""

    def __init__(self, board: Board, console: Console) -> None:
        self.board = board
        self.console = console
        self._live = Live(
            get_renderable=self._render,
            redirect_stdout=False,  # our logs go to a file, never into the display
            redirect_stderr=False, console=console, refresh_per_second=4, screen=False,
            transient=False,
        )  # fmt: skip

    def __enter__(self) -> LiveView:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(None, None, None)

    def line(self, text: str) -> None:
        self.board.events.append(text)
        del self.board.events[:-8]

    def refresh(self) -> None:
        self._live.refresh()

    def _render(self) -> RenderableType:
        b = self.board
        steps = Table.grid(padding=(0, 1), expand=True)
        steps.add_column(width=1, no_wrap=True)
        steps.add_column(no_wrap=True, max_width=48, overflow="ellipsis")
        steps.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
        marks = {"pending": "[dim]·[/]", "running": "[yellow]…[/]", "done": "[green]✓[/]",
                 "failed": "[red]✗[/]"}  # fmt: skip
        for step in b.steps:
            steps.add_row(marks[step.status], Text(step.title, style="bold"), step.detail)
        people = Table(expand=True, box=None, header_style="bold", padding=(0, 1))
        for col in ("who", "on", "room role", "muted", "talking", "speaks", "", "in the mix"):
            people.add_column(col, no_wrap=True)
        for p in b.people:
            phone = p.side == "phone"
            people.add_row(
                p.name, "phone" if phone else "chat", p.role,
                "[red]muted[/]" if p.muted else "", "[green]● talking[/]" if p.talking else "",
                db(p.spoken) if phone else "", _bar(p.spoken) if phone else "",
                db(p.in_mix) if phone else "",
            )  # fmt: skip
        chat = Text(overflow="ellipsis", no_wrap=True)
        for nick, body in b.chat[-5:]:
            chat.append(f"{nick}: ", style="bold cyan")
            chat.append(body + "\n")
        facts = Text()
        uri = b.roominfo.get("audio-video-uri")
        if uri:
            facts.append("room disco#info  ", style="bold")
            facts.append(f"audio-video-uri = {uri}\n", style="magenta")
        if b.notify_summary:
            facts.append(f"NOTIFY #{b.notify_count}  ", style="bold")
            facts.append(b.notify_summary)
        events = Text("\n".join(b.events[-3:]), style="dim", overflow="ellipsis", no_wrap=True)
        return Group(
            Panel(steps, title=f"[bold]{b.title}[/]  {b.elapsed():5.1f}s", border_style="blue"),
            Panel(people, title="in the meeting: phone and chat", border_style="green"),
            _side_by_side(
                Panel(chat or Text("(no messages yet)", style="dim"), title="room chat"),
                Panel(facts or Text("(not read yet)", style="dim"), title="what clients discover"),
            ),
            events,
            Text(b.footer, style="cyan"),
        )


def _side_by_side(left: RenderableType, right: RenderableType) -> Table:
    grid = Table.grid(expand=True)
    grid.add_column(ratio=1)
    grid.add_column(ratio=1)
    grid.add_row(left, right)
    return grid


View = PlainView | LiveView
ViewFactory = Callable[[Board], View]
