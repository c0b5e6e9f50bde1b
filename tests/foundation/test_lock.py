"""The lock files: every Python dependency pinned with hashes, consistent with pyproject.toml,
and what scripts/bootstrap and the Dockerfile install (nothing resolved at install time)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "requirements" / "runtime.txt"
TEST = ROOT / "requirements" / "test.txt"


def pins(path: Path) -> dict[str, tuple[str, int]]:
    """name → (version, number of hashes) of a ``uv pip compile --generate-hashes`` file."""
    found: dict[str, tuple[str, int]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", path.read_text()):
        match = re.match(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s\\]+)", block)
        if match:
            name = canonicalize_name(match.group(1))
            found[name] = (match.group(3), block.count("--hash=sha256:"))
    return found


def declared(extra: str | None = None) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    return [Requirement(item) for item in listed]


def test_every_pin_has_hashes_and_nothing_is_unpinned() -> None:
    for path in (RUNTIME, TEST):
        text = path.read_text()
        assert "-e " not in text and "git+" not in text and "file:" not in text
        for name, (version, hashes) in pins(path).items():
            assert hashes >= 1, f"{path.name}: {name}=={version} has no hash"


def test_the_locks_satisfy_pyproject() -> None:
    runtime, test = pins(RUNTIME), pins(TEST)
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in runtime, f"{name} not in requirements/runtime.txt (run scripts/lock)"
        assert requirement.specifier.contains(runtime[name][0], prereleases=True), name
    for requirement in declared("test"):
        name = canonicalize_name(requirement.name)
        if name == "sipmuc-bridge":
            continue
        assert name in test, f"{name} is missing from requirements/test.txt (run scripts/lock)"
        assert requirement.specifier.contains(test[name][0], prereleases=True), name


def test_runtime_is_the_same_versions_as_test() -> None:
    runtime, test = pins(RUNTIME), pins(TEST)
    assert set(runtime) <= set(test)
    assert {n: v for n, (v, _) in runtime.items()} == {n: test[n][0] for n in runtime}
    for tool in ("pip", "setuptools", "wheel"):  # the project is installed without isolation
        assert tool in runtime


def test_installs_use_the_lock_with_hashes() -> None:
    bootstrap = (ROOT / "scripts" / "bootstrap").read_text()
    assert "--require-hashes --no-deps -r requirements/test.txt" in bootstrap
    assert "--no-deps --no-build-isolation -e ." in bootstrap
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes --no-deps -r requirements/runtime.txt" in dockerfile
    assert "--no-deps --no-build-isolation" in dockerfile
    assert "index-url" not in dockerfile.lower() and "index-url" not in bootstrap.lower()
