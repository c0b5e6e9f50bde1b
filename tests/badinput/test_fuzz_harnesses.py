"""Each atheris harness in fuzz/ runs for a bounded number of inputs (CI keeps them working;
long campaigns are run by hand, see fuzz/README.md). A crash fails the test with the input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
HARNESSES = sorted(p.stem for p in FUZZ.glob("*.py") if not p.stem.startswith("_"))
RUNS = 2000


def test_every_harness_is_listed() -> None:
    assert {"conference_info", "sipmsg", "commands", "stox", "nicks", "policy"} <= set(HARNESSES)


@pytest.mark.parametrize("name", HARNESSES)
def test_harness_runs_clean(name: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(FUZZ / f"{name}.py"), f"-atheris_runs={RUNS}",
         f"-artifact_prefix={tmp_path}/", "-seed=1"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path, check=False,
    )  # fmt: skip
    crashes = [p.name for p in tmp_path.glob("crash-*")]
    assert result.returncode == 0 and not crashes, result.stderr[-3000:]
    assert f"Done {RUNS}" in result.stderr
