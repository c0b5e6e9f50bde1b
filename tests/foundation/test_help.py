"""``--help`` reads as plain text and ``--version`` answers, for every command."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bridge import __version__

COMMANDS = ("run", "check-config", "demo", "phone", "chat", "version")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge", *args], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip


@pytest.mark.parametrize("args", [(), *((c,) for c in COMMANDS)])
def test_help_has_no_markup(args: tuple[str, ...]) -> None:
    result = _cli(*args, "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "usage: sipmuc-bridge" in text
    for markup in ("``", "`", "**", ":class:", ":func:"):
        assert markup not in text, f"raw markup {markup!r} in --help:\n{text}"


def test_top_level_help_names_the_commands_and_first_steps() -> None:
    text = _cli("--help").stdout
    for command in COMMANDS:
        assert command in text
    assert "sipmuc-bridge demo" in text


def test_version_option() -> None:
    result = _cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"sipmuc-bridge {__version__}"
