"""scripts/build-pjsip never builds unverified source, and its cache key follows its inputs.

These tests run the script's --verify-only / --print-key modes on doctored copies of the
pinned tarball: no compiler is started.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "build-pjsip"
PINNED = (ROOT / "pjsip" / "pjproject-2.17.sha256").read_text().split()[0]
VENDORED = Path(
    os.environ.get("PJSIP_TARBALL", ROOT.parent / "shared" / "vendor" / "pjproject-2.17.tar.gz")
)

needs_tarball = pytest.mark.skipif(not VENDORED.exists(), reason=f"no {VENDORED}")


def run(
    *args: str | Path, cwd: Path = ROOT, script: Path = SCRIPT
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PJSIP_")}
    return subprocess.run(
        [str(script), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pinned release, extracted once."""
    top = tmp_path_factory.mktemp("pj")
    with tarfile.open(VENDORED) as tar:
        tar.extractall(top, filter="data")
    return top / "pjproject-2.17"


def repack(tree: Path, out: Path, *, compresslevel: int = 1) -> Path:
    """Same files, different bytes: other member order, timestamps and gzip level."""
    with tarfile.open(out, "w:gz", compresslevel=compresslevel) as tar:
        for path in sorted(tree.rglob("*"), reverse=True):
            tar.add(path, arcname=f"pjproject-2.17/{path.relative_to(tree)}", recursive=False)
    return out


@needs_tarball
def test_pinned_checksum_is_the_vendored_file() -> None:
    assert hashlib.sha256(VENDORED.read_bytes()).hexdigest() == PINNED
    done = run("--verify-only", "--tarball", VENDORED)
    assert done.returncode == 0, done.stderr
    assert f"sha256 {PINNED}" in done.stderr


@needs_tarball
def test_same_content_other_bytes_is_verified_by_content_hash(
    source_tree: Path, tmp_path: Path
) -> None:
    """What an upstream download looks like: not byte-identical, same source."""
    copy = repack(source_tree, tmp_path / "pjproject-2.17.tar.gz")
    assert hashlib.sha256(copy.read_bytes()).hexdigest() != PINNED
    done = run("--verify-only", "--tarball", copy)
    assert done.returncode == 0, done.stderr
    assert "tree-sha256" in done.stderr


@needs_tarball
def test_one_changed_byte_is_refused(source_tree: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(source_tree, tree)
    pool = tree / "pjlib" / "src" / "pj" / "pool.c"
    pool.write_bytes(pool.read_bytes().replace(b"PJ_DEF", b"PJ_DEF ", 1))
    done = run("--verify-only", "--tarball", repack(tree, tmp_path / "evil.tar.gz"))
    assert done.returncode != 0
    assert "REFUSED" in done.stderr


@needs_tarball
def test_a_symlink_in_the_source_is_refused(source_tree: Path, tmp_path: Path) -> None:
    """A link could make the build read (or write) outside its tree."""
    tree = tmp_path / "tree"
    shutil.copytree(source_tree, tree)
    (tree / "pjlib" / "passwd").symlink_to("/etc/passwd")
    done = run("--verify-only", "--tarball", repack(tree, tmp_path / "link.tar.gz"))
    assert done.returncode != 0
    assert "REFUSED" in done.stderr


@needs_tarball
def test_a_flipped_executable_bit_is_refused(source_tree: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(source_tree, tree)
    (tree / "README.md").chmod(0o755)
    done = run("--verify-only", "--tarball", repack(tree, tmp_path / "x.tar.gz"))
    assert done.returncode != 0


def test_missing_tarball_is_a_clear_error(tmp_path: Path) -> None:
    done = run("--verify-only", "--tarball", tmp_path / "nope.tar.gz")
    assert done.returncode != 0
    assert "does not exist" in done.stderr


def test_cache_key_follows_config_site(tmp_path: Path) -> None:
    """A copy of the repository's build inputs: editing config_site.h means a new build."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "pjsip", repo / "pjsip")
    (repo / "scripts").mkdir()
    shutil.copy2(SCRIPT, repo / "scripts" / "build-pjsip")
    script = repo / "scripts" / "build-pjsip"
    python = ROOT / ".venv" / "bin" / "python"
    key = run("--print-key", "--python", python, cwd=repo, script=script)
    assert key.returncode == 0, key.stderr
    again = run("--print-key", "--python", python, cwd=repo, script=script)
    assert again.stdout == key.stdout
    with (repo / "pjsip" / "config_site.h").open("a") as f:
        f.write("#define PJSUA_MAX_ACC 4\n")
    changed = run("--print-key", "--python", python, cwd=repo, script=script)
    assert changed.returncode == 0 and changed.stdout != key.stdout


def test_cache_key_follows_the_patches(tmp_path: Path) -> None:
    """Editing, adding or removing a patch in pjsip/patches/ means a new build."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "pjsip", repo / "pjsip")
    (repo / "scripts").mkdir()
    shutil.copy2(SCRIPT, repo / "scripts" / "build-pjsip")
    script = repo / "scripts" / "build-pjsip"
    python = ROOT / ".venv" / "bin" / "python"

    def key() -> str:
        done = run("--print-key", "--python", python, cwd=repo, script=script)
        assert done.returncode == 0, done.stderr
        return done.stdout

    keys = [key()]
    patch = next((repo / "pjsip" / "patches").glob("*.patch"))
    patch.write_text(patch.read_text() + "\n")
    keys.append(key())
    (repo / "pjsip" / "patches" / "0099-extra.patch").write_text("x\n")
    keys.append(key())
    shutil.rmtree(repo / "pjsip" / "patches")
    keys.append(key())
    assert len(set(keys)) == 4


@needs_tarball
def test_every_patch_applies_to_the_pinned_source(source_tree: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(source_tree / "pjmedia" / "src" / "pjmedia", tree / "pjmedia/src/pjmedia")
    patches = sorted((ROOT / "pjsip" / "patches").glob("*.patch"))
    assert patches
    for patch in patches:
        done = subprocess.run(
            ["patch", "-d", str(tree), "-p1", "--forward", "--batch", "-i", str(patch)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    port_c = (tree / "pjmedia/src/pjmedia/port.c").read_text()
    # upstream PR #5186: the function pointer is read once, never checked and re-read
    assert "if (port->get_frame)" not in port_c and "if (get_frame)" in port_c
    assert "if (port->put_frame)" not in port_c and "if (put_frame)" in port_c
