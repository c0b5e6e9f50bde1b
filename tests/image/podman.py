"""Build and run the bridge image with Debian's podman, runc and mmdebstrap (no Docker engine,
no image registry on these machines; DESIGN §5).

- podman runs with ``--runtime /usr/sbin/runc`` and a ``containers.conf`` that sets
  ``cgroup_manager = "cgroupfs"`` and ``default_ulimits = []`` (crun fails here: hybrid
  cgroups, setrlimit denied);
- the Dockerfile's Debian base is ``mmdebstrap --variant=minbase bookworm``, imported and passed
  as ``DEBIAN_IMAGE``;
- ``podman build --network=host`` with the machine's own pip configuration and CA bundle
  mounted read-only (what ``pip config list`` says; nothing of it is written into the
  repository), and the pjproject source and scripts/build-pjsip's cache as build contexts;
- everything is cached on the machine: the base tarball (a week), podman's layers, and the
  built image under a tag keyed by the Dockerfile, the lock file, the pjsip cache key and the
  build context's files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sipmuc" / "image"
REPOSITORY = "localhost/sipmuc-bridge"
BASE_REPOSITORY = "localhost/sipmuc-debian"
BASE_MAX_AGE_S = 7 * 86400
VENDOR = ROOT.parent / "shared" / "vendor"
CONTAINERS_CONF = """# written by tests/image/podman.py
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
"""
# What the Dockerfile copies (keep in step with .dockerignore).
CONTEXT = ("pyproject.toml", "README.md", "requirements/runtime.txt", "pjsip",
           "scripts/build-pjsip", "bridge", "mixer")  # fmt: skip
CA_VARIABLES = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
PIP_KEYS = ("index-url", "extra-index-url", "trusted-host", "timeout", "default-timeout",
            "retries", "proxy")  # fmt: skip


class ImageToolsMissing(RuntimeError):
    """podman, runc or mmdebstrap is not installed (scripts/bootstrap installs them)."""


@dataclass
class Timings:
    """What the image steps cost on this machine (printed at the end of the test run)."""

    steps: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def record(self, step: str, seconds: float) -> None:
        self.steps[step] = round(seconds, 1)
        CACHE.mkdir(parents=True, exist_ok=True)
        (CACHE / "timings.json").write_text(json.dumps(self.steps, indent=2))

    def note(self, what: str, value: str) -> None:
        self.notes[what] = value


TIMINGS = Timings()


def check_tools() -> None:
    missing = [tool for tool in ("podman", "mmdebstrap") if shutil.which(tool) is None]
    if not Path("/usr/sbin/runc").exists():
        missing.append("runc")
    if missing:
        raise ImageToolsMissing(
            f"{', '.join(missing)} not installed: run scripts/bootstrap (scripts/apt-packages.txt)"
        )


class Podman:
    """``podman --runtime /usr/sbin/runc`` with our containers.conf."""

    def __init__(self) -> None:
        CACHE.mkdir(parents=True, exist_ok=True)
        self.conf = CACHE / "containers.conf"
        if not self.conf.exists() or self.conf.read_text() != CONTAINERS_CONF:
            self.conf.write_text(CONTAINERS_CONF)
        self.env = {**os.environ, "CONTAINERS_CONF": str(self.conf)}

    def argv(self, *args: str) -> list[str]:
        return ["podman", "--runtime", "/usr/sbin/runc", *args]

    def run(self, *args: str, check: bool = True, timeout: float = 600,
            log: Path | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """One podman command; with ``log`` its output goes there (and its tail into the
        error when it fails)."""
        if log is None:
            done = subprocess.run(self.argv(*args), env=self.env, capture_output=True,
                                  text=True, timeout=timeout, check=False)  # fmt: skip
            output = done.stdout + done.stderr
        else:
            with log.open("w") as sink:
                done = subprocess.run(self.argv(*args), env=self.env, stdout=sink,
                                      stderr=subprocess.STDOUT, text=True, timeout=timeout,
                                      check=False)  # fmt: skip
            output = log.read_text(errors="replace")
        if check and done.returncode != 0:
            raise RuntimeError(
                f"podman {shlex.join(args[:3])} … failed ({done.returncode}):\n{output[-4000:]}"
            )
        return done

    def exists(self, image: str) -> bool:
        return self.run("image", "exists", image, check=False).returncode == 0

    def popen(self, *args: str, stdout: int | object, stderr: int | object
              ) -> subprocess.Popen[bytes]:  # fmt: skip
        return subprocess.Popen(self.argv(*args), env=self.env, stdout=stdout, stderr=stderr)  # type: ignore[arg-type]


def base_image(podman: Podman) -> str:
    """The Debian base: ``mmdebstrap --variant=minbase bookworm``, rebuilt after a week."""
    tarball = CACHE / "debian-bookworm-minbase.tar"
    fresh = tarball.exists() and time.time() - tarball.stat().st_mtime < BASE_MAX_AGE_S
    if not fresh:
        start = time.monotonic()
        part = tarball.with_name("debian-bookworm-minbase.part.tar")  # mmdebstrap: by suffix
        done = subprocess.run(
            ["mmdebstrap", "--variant=minbase", "--mode=root", "bookworm", str(part)],
            capture_output=True, text=True, timeout=1200, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"mmdebstrap failed:\n{(done.stdout + done.stderr)[-4000:]}")
        part.replace(tarball)
        TIMINGS.record("mmdebstrap bookworm minbase", time.monotonic() - start)
    digest = _file_hash(tarball)[:16]
    image = f"{BASE_REPOSITORY}:bookworm-minbase-{digest}"
    if not podman.exists(image):
        start = time.monotonic()
        podman.run("import", str(tarball), image)
        TIMINGS.record("podman import of the base", time.monotonic() - start)
    return image


def pip_config(workdir: Path) -> tuple[Path, Path | None]:
    """A pip.conf for the build from this machine's pip configuration (``pip config list``):
    its index settings, file:// locations left out (they are not inside the build), and
    ``cert`` pointing at the CA bundle mounted into the build. Returns (pip.conf, CA bundle)."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                            capture_output=True, text=True, check=False).stdout  # fmt: skip
    values: dict[str, str] = {}
    for line in listed.splitlines():
        scope_key, _, value = line.partition("=")
        key = scope_key.rpartition(".")[2]
        values[key] = value.strip().strip("'\"")
    lines = ["[global]"]
    for key in PIP_KEYS:
        if key not in values:
            continue
        items = [v for v in values[key].split() if not v.startswith("file:")]
        if items:
            lines.append(f"{key} = {' '.join(items)}")
    ca_path = next(
        (v for v in (values.get("cert"), *map(os.environ.get, CA_VARIABLES)) if v), None
    )
    ca = Path(ca_path) if ca_path and Path(ca_path).is_file() else None
    if ca is not None:
        lines.append("cert = /run/sipmuc-build/ca.crt")
    conf = workdir / "pip.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf, ca


def pjsip_cache() -> Path:
    return Path(os.environ.get("PJSIP_CACHE_DIR",
                               Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                               / "sipmuc" / "pjsip"))  # fmt: skip


def pjsip_key() -> str:
    python = ROOT / ".venv" / "bin" / "python"
    done = subprocess.run(
        [str(ROOT / "scripts" / "build-pjsip"), "--print-key", "--python", str(python)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def context_hash() -> str:
    """Content of everything the image is built from."""
    digest = hashlib.sha256()
    for name in ("Dockerfile", ".dockerignore", *CONTEXT):
        path = ROOT / name
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            if "__pycache__" in file.parts or file.suffix == ".pyc":
                continue
            digest.update(str(file.relative_to(ROOT)).encode() + b"\0")
            digest.update(_file_hash(file).encode() + b"\n")
    return digest.hexdigest()


def build_image(podman: Podman, workdir: Path) -> str:
    """The bridge image (target runtime) for the current tree: reused when built before."""
    base = base_image(podman)
    key = hashlib.sha256(f"{base} {pjsip_key()} {context_hash()}".encode()).hexdigest()[:20]
    image = f"{REPOSITORY}:test-{key}"
    if podman.exists(image):
        TIMINGS.record("image build (cached)", 0.0)
        return image
    conf, ca = pip_config(workdir)
    args = [
        "build", "--network=host", "--pull=never", "--target", "runtime",
        "--build-arg", f"DEBIAN_IMAGE={base}",
        "--build-context", f"pjsip-cache={pjsip_cache()}",
        "-v", f"{conf}:/etc/pip.conf:ro",
        "-t", image, "-f", str(ROOT / "Dockerfile"),
    ]  # fmt: skip
    if (VENDOR / "pjproject-2.17.tar.gz").is_file():
        args += ["--build-context", f"pjsip-source={VENDOR}"]
    if ca is not None:
        args += ["-v", f"{ca}:/run/sipmuc-build/ca.crt:ro"]
    start = time.monotonic()
    podman.run(*args, str(ROOT), timeout=3600, log=workdir / "build.log")
    TIMINGS.record("image build", time.monotonic() - start)
    for line in podman.run("images", "--format", "{{.Repository}}:{{.Tag}}",
                           REPOSITORY).stdout.split():  # fmt: skip
        if line.startswith(f"{REPOSITORY}:test-") and line != image:
            podman.run("rmi", line, check=False)  # older test builds of this machine
    return image


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


__all__ = ["TIMINGS", "ImageToolsMissing", "Podman", "build_image", "check_tools"]
