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


def test_licence_is_gpl_2_or_later_everywhere() -> None:
    """We link PJSIP (GPL-2.0-or-later): LICENSE, package metadata and README agree."""
    import tomllib
    from importlib.metadata import metadata

    assert (ROOT / "LICENSE").read_text().lstrip().startswith("GNU GENERAL PUBLIC LICENSE")
    assert "Version 2, June 1991" in (ROOT / "LICENSE").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "GPL-2.0-or-later"
    assert project["license-files"] == ["LICENSE"]
    assert metadata("sipmuc-bridge")["License-Expression"] == "GPL-2.0-or-later"
    assert "GPL-2.0-or-later" in (ROOT / "README.md").read_text()
