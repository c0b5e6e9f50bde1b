"""``scripts/bootstrap`` prints a few progress lines, keeps apt's and pip's output in a log
that it shows when a step fails, and leaves the servers it installs off at boot."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A stand-in for python3: as noisy as pip, as a real first run is (≈ 660 lines).
FAKE_PYTHON = """#!/usr/bin/env bash
if [[ $1 == --version ]]; then echo "Python 3.11 (stand-in)"; exit 0; fi
for i in $(seq 1 300); do echo "noise line $i of $*"; done
if [[ $1 == -m && $2 == venv ]]; then
    mkdir -p "$3/bin" && cp "$0" "$3/bin/python" && exit 0
fi
if [[ $1 == -m && $2 == pip && -n ${FAIL_PIP:-} ]]; then
    echo "ERROR: no such package: boom"
    exit 1
fi
exit 0
"""


FAKE_BUILD_PJSIP = """#!/usr/bin/env bash
if [[ $1 == --check ]]; then [[ -z ${PJSIP_STALE:-} ]]; exit; fi
for i in $(seq 1 200); do echo "make line $i"; done
"""


def _checkout(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of bootstrap with a package list that is installed already (no apt run)."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for name in ("bootstrap", "quiet-daemons"):
        shutil.copy2(ROOT / "scripts" / name, repo / "scripts" / name)
    pjsip = repo / "scripts" / "build-pjsip"  # a stand-in: up to date unless PJSIP_STALE
    pjsip.write_text(FAKE_BUILD_PJSIP)
    pjsip.chmod(0o755)
    installed = subprocess.run(["dpkg-query", "-W", "-f=${Package}\\n", "bash"],
                               capture_output=True, text=True, check=True).stdout  # fmt: skip
    (repo / "scripts" / "apt-packages.txt").write_text(installed)
    shutil.copy2(ROOT / "pyproject.toml", repo / "pyproject.toml")
    (repo / "requirements").mkdir()
    shutil.copy2(ROOT / "requirements" / "test.txt", repo / "requirements" / "test.txt")
    fake = tmp_path / "python3"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    return repo, {**os.environ, "PYTHON": str(fake)}


def _bootstrap(repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(repo / "scripts" / "bootstrap")], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="Debian tooling")
def test_a_first_run_prints_progress_lines_only(tmp_path: Path) -> None:
    repo, env = _checkout(tmp_path)
    done = _bootstrap(repo, env)
    assert done.returncode == 0, done.stderr
    lines = (done.stdout + done.stderr).splitlines()
    assert lines == [
        "[bootstrap] creating .venv with Python 3.11 (stand-in)",
        "[bootstrap] installing Python packages into .venv (requirements/test.txt, hashes checked;"
        " pip's output: var/bootstrap.log)",
        "[bootstrap] ready",
    ]
    log = (repo / "var" / "bootstrap.log").read_text()
    locked = "-m pip install -q --require-hashes --no-deps -r requirements/test.txt"
    assert f"noise line 300 of {locked}" in log


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="Debian tooling")
def test_a_pjsip_build_is_one_progress_line(tmp_path: Path) -> None:
    repo, env = _checkout(tmp_path)
    done = _bootstrap(repo, {**env, "PJSIP_STALE": "1"})
    assert done.returncode == 0, done.stderr
    lines = (done.stdout + done.stderr).splitlines()
    assert lines[-2].startswith("[bootstrap] PJSIP 2.17 for .venv") and len(lines) == 4
    assert "make line 200" in (repo / "var" / "bootstrap.log").read_text()


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="Debian tooling")
def test_a_failing_step_shows_the_end_of_its_log(tmp_path: Path) -> None:
    repo, env = _checkout(tmp_path)
    done = _bootstrap(repo, {**env, "FAIL_PIP": "1"})
    assert done.returncode != 0
    out = done.stdout + done.stderr
    assert len(out.splitlines()) < 40, out
    assert "failed: installing Python packages" in out
    assert "ERROR: no such package: boom" in out  # the reason, from the log's tail
    assert "var/bootstrap.log" in out
    assert not list((repo / ".venv").glob(".installed-*")), "a failed install is retried"


def _fake_systemd_root(tmp_path: Path, units: tuple[str, ...]) -> Path:
    root = tmp_path / "root"
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    (root / "lib/systemd/system").mkdir(parents=True)
    for unit in units:
        (root / "lib/systemd/system" / unit).write_text(
            "[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true\n"
            "[Install]\nWantedBy=multi-user.target\n"
        )
        (wants / unit).symlink_to(f"/lib/systemd/system/{unit}")
    return root


@pytest.mark.skipif(shutil.which("systemctl") is None, reason="needs systemctl")
def test_servers_installed_by_bootstrap_are_off_at_boot(tmp_path: Path) -> None:
    servers = ("prosody", "redis-server", "kamailio", "ejabberd")
    root = _fake_systemd_root(tmp_path, (*(f"{s}.service" for s in servers), "mine.service"))
    done = subprocess.run(
        [str(ROOT / "scripts" / "quiet-daemons"), "--root", str(root), *servers, "mine"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    wants = root / "etc/systemd/system/multi-user.target.wants"
    assert sorted(p.name for p in wants.iterdir()) == ["mine.service"]  # only ours are touched


def test_bootstrap_quiets_exactly_the_packages_it_installed() -> None:
    text = (ROOT / "scripts" / "bootstrap").read_text()
    assert 'scripts/quiet-daemons "${missing[@]}"' in text
