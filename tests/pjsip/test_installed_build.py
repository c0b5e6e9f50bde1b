"""The pjsua2 module in this environment is our own pjproject build, with our limits.

Each check runs in a fresh interpreter: pjsua2 holds one endpoint per process.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pjsua2

from bridge.sip import evsub_native

PACKAGE = Path(pjsua2.__file__).parent


def in_fresh_process(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_it_is_the_sipmuc_build_not_the_pypi_wheel() -> None:
    from importlib.metadata import PackageNotFoundError, version

    assert version("sipmuc-pjsua2").startswith("2.17+sipmuc.")
    try:
        version("pjsua2-python")
    except PackageNotFoundError:
        pass
    else:
        raise AssertionError("the stock pjsua2-python wheel is still installed")
    assert (PACKAGE / "BUILD-INFO.txt").read_text().startswith("pjproject 2.17")


def test_pinned_struct_offsets_match_the_headers_of_this_build() -> None:
    """pjsip/layout_probe.c ran against this build's headers (offsetof); the pins agree."""
    measured = json.loads((PACKAGE / "LAYOUT.json").read_text())
    assert measured["pj_version"] == evsub_native.PINNED_PJSUA2_VERSION
    assert measured["pointer_size"] == 8
    for name, offset in dataclasses.asdict(evsub_native.PINNED).items():
        assert measured[name] == offset, f"{name}: headers say {measured[name]}, pinned {offset}"
    # the public structs we declare with ctypes have the C sizes
    assert measured["sizeof_pjsip_module"] == 112
    assert measured["sizeof_pjsip_evsub_user"] == 48


def test_library_version_and_call_ceiling() -> None:
    """256 calls per endpoint (config_site.h); the stock build stops at 4."""
    out = in_fresh_process(
        "import ctypes, pjsua2 as pj\n"
        "from bridge.sip import evsub_native as nat\n"
        "ep = pj.Endpoint(); ep.libCreate(); cfg = pj.EpConfig()\n"
        "cfg.logConfig.level = 0; cfg.logConfig.consoleLevel = 0\n"
        "cfg.uaConfig.maxCalls = 1000; ep.libInit(cfg)\n"
        "lib = ctypes.CDLL(pj._pjsua2.__file__)\n"
        "print(nat.library_version(nat.Native()), lib.pjsua_call_get_max_count())\n"
    )
    assert out.split() == ["2.17", "256"]


def test_links_openssl_3_opus_and_libsrtp2() -> None:
    module = next(PACKAGE.glob("_pjsua2*.so"))
    needed = subprocess.run(
        ["readelf", "-d", str(module)], capture_output=True, text=True, check=True
    ).stdout
    for lib in ("libssl.so.3", "libcrypto.so.3", "libopus.so.0", "libsrtp2.so.1"):
        assert f"[{lib}]" in needed, lib
    assert "Library runpath: [$ORIGIN]" in needed  # pjproject's .so files beside it
