"""Keep libraries' chatter off the screen: their output goes to a log file, ours to the user."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[TextIO]:
    """Send fds 1 and 2 (our logs, and those of PJSIP and of child processes, which inherit
    them) to ``path``; yield the terminal's original stdout for what the user should see."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    screen = os.fdopen(os.dup(saved[1]), "w", encoding="utf-8", errors="replace")
    with path.open("ab") as log:
        for fd in (1, 2):
            os.dup2(log.fileno(), fd)
    try:
        yield screen
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        screen.close()


def plural(count: int, word: str, words: str = "") -> str:
    """``1 user``, ``2 users`` (``words`` for an irregular plural)."""
    return f"{count} {word if count == 1 else (words or word + 's')}"
