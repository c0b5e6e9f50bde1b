"""What the demo shows: one model (:class:`Board`) and two ways to show it.

* :class:`LiveView` (a terminal): a rich screen redrawn four times a second — the steps, who
  is in the meeting (phone or chat, role, muted, talking, level spoken and level in the mix),
  the room's chat, the room's disco#info and the latest conference-info NOTIFY.
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
from rich.syntax import Syntax
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


@dataclass
class Board:
    """Everything on screen; the scenario writes it, the views read it."""

    title: str = "sipmuc-bridge demo"
    started: float = field(default_factory=time.monotonic)
    steps: list[Step] = field(default_factory=list)
    people: list[Person] = field(default_factory=list)
    chat: list[tuple[str, str]] = field(default_factory=list)
    roominfo: dict[str, str] = field(default_factory=dict)
    notify_xml: str = ""
    notify_count: int = 0
    events: list[str] = field(default_factory=list)
    footer: str = ""

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def db(power: float) -> str:
    """Power (full scale = 1.0) as dBFS text; exact zero is "silent"."""
    if power <= 0.0:
        return "silent"
    return f"{10 * math.log10(power):5.1f} dBFS"


def _bar(power: float, width: int = 12) -> Text:
    if power <= 0.0:
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
            get_renderable=self._render, console=console, refresh_per_second=4, screen=False,
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
        steps = Table.grid(padding=(0, 1))
        marks = {"pending": "[dim]·[/]", "running": "[yellow]…[/]", "done": "[green]✓[/]",
                 "failed": "[red]✗[/]"}  # fmt: skip
        for step in b.steps:
            steps.add_row(marks[step.status], Text(step.title, style="bold"),
                          Text(step.detail, overflow="fold"))  # fmt: skip
        people = Table(expand=True, box=None, header_style="bold")
        for col in ("who", "on", "room role", "muted", "talking", "speaks", "", "in the mix"):
            people.add_column(col)
        for p in b.people:
            phone = p.side == "phone"
            people.add_row(
                p.name, "📞 phone" if phone else "💬 chat", p.role,
                "[red]muted[/]" if p.muted else "", "[green]● talking[/]" if p.talking else "",
                db(p.spoken) if phone else "", _bar(p.spoken) if phone else "",
                db(p.in_mix) if phone else "",
            )  # fmt: skip
        chat = Text()
        for nick, body in b.chat[-8:]:
            chat.append(f"{nick}: ", style="bold cyan")
            chat.append(body + "\n")
        info = Text()
        for var, value in b.roominfo.items():
            style = "bold magenta" if var == "audio-video-uri" else ""
            info.append(f"{var} = {value}\n", style=style)
        notify: RenderableType = Text("(waiting for the first NOTIFY)", style="dim")
        if b.notify_xml:
            lines = b.notify_xml.splitlines()
            shown = "\n".join(lines[:22] + (["  …"] if len(lines) > 22 else []))
            notify = Syntax(shown, "xml", theme="ansi_dark", word_wrap=True)
        events = Text("\n".join(b.events[-6:]), style="dim")
        return Group(
            Panel(steps, title=f"[bold]{b.title}[/]  {b.elapsed():5.1f}s", border_style="blue"),
            Panel(people, title="in the meeting (phone and chat)", border_style="green"),
            Panel(chat or Text("(no messages yet)", style="dim"), title="room chat"),
            Panel(
                info or Text("(not read yet)", style="dim"),
                title="room disco#info (muc#roominfo)",
            ),
            Panel(notify, title=f"conference-info NOTIFY #{b.notify_count} (RFC 4575)"),
            events,
            Text(b.footer),
        )


View = PlainView | LiveView
ViewFactory = Callable[[Board], View]
