"""The mixer library must stay free of SIP/XMPP code (the bench alone may load pjsua2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_mixer_loads_no_sip_or_xmpp_module() -> None:
    code = (
        "import sys, mixer, mixer.engine, mixer.rings, mixer.node, mixer.clock, mixer.resample;"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('pjsua2', 'slixmpp', 'bridge', 'structlog', 'scipy', 'soxr')];"
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""
