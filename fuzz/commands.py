"""bridge.core.commands: any line typed in a room → a command or a ParseError with a message;
nick resolution never guesses and never raises."""

from __future__ import annotations

import _harness
import atheris

with atheris.instrument_imports():
    from bridge.core.commands import NickError, ParseError, parse_command, resolve_nick

NAMES = ["mute", "unmute", "kick", "hangup", "link", "unlink", "lock", "unlock", "pin", "dial",
         "status", "help"]  # fmt: skip


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeBool():
        text = "!" + NAMES[fdp.ConsumeIntInRange(0, len(NAMES) - 1)] + " "
        text += fdp.ConsumeUnicodeNoSurrogates(300)
    else:
        text = fdp.ConsumeUnicodeNoSurrogates(600)
    result = parse_command(text)
    if isinstance(result, ParseError):
        assert result.code == "not-command" or result.message.strip()
    nicks = [fdp.ConsumeUnicodeNoSurrogates(20) for _ in range(fdp.ConsumeIntInRange(0, 6))]
    found = resolve_nick(fdp.ConsumeUnicodeNoSurrogates(30), nicks)
    assert isinstance(found, NickError) or found in nicks


if __name__ == "__main__":
    _harness.run(test_one_input)
