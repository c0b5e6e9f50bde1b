"""The README's front-door promises stay true."""

from __future__ import annotations

from pathlib import Path

from bridge.config_doc import reference

ROOT = Path(__file__).resolve().parents[2]


def test_settings_reference_is_current() -> None:
    readme = (ROOT / "README.md").read_text()
    assert reference() in readme, "run: python -m bridge.config_doc and paste into README.md"


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test" in readme
    assert "exec scripts/test" in ci
