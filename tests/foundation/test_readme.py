"""The README's front-door promises stay true."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_the_example_configuration_is_valid(tmp_path: Path) -> None:
    """The README's TOML example passes check-config as written (no environment help)."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Configuration") :]
    example = section[section.index("```toml\n") + len("```toml\n") : section.index("\n```\n")]
    config = tmp_path / "bridge.toml"
    config.write_text(example + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPMUC_")}
    done = subprocess.run([sys.executable, "-m", "bridge", "check-config", "-c", str(config)],
                          env=env, capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    settings = json.loads(done.stdout)
    assert settings["rooms"] == ["standup"]
    assert "change-me" not in done.stdout  # masked


LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize(
    "doc", ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("docs/*.md"))]
)
def test_documents_link_only_inside_the_repository(doc: str) -> None:
    """A clone has no ../shared/: every relative link must resolve to a file of the repo."""
    path = ROOT / doc
    text = path.read_text()
    assert "../shared" not in text and "shared/DESIGN" not in text
    for target in LINK.findall(text):
        if "://" in target or target.startswith("mailto:"):
            continue
        resolved = (path.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), f"{doc} links outside the repository: {target}"
        assert resolved.exists(), f"{doc} links to a missing file: {target}"
