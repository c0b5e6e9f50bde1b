"""Fixtures of the image test: a Prosody with our MUC module, the image built once a session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.devstack.prosody import ProsodyServer
from tests.conftest import TEST_USERS
from tests.image.podman import TIMINGS, ImageToolsMissing, Podman, build_image, check_tools


@pytest.fixture
def room_prosody(tmp_path: Path) -> Iterator[ProsodyServer]:
    """Prosody with the audio-video-uri module; alice and the component are admins."""
    server = ProsodyServer(
        tmp_path / "prosody",
        users=dict(TEST_USERS),
        muc_modules=["muc_audio_video_uri"],
        admins=["alice@localhost", "bridge.localhost"],
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def podman() -> Podman:
    try:
        check_tools()
    except ImageToolsMissing as error:
        pytest.fail(str(error))  # bootstrap installs them: missing is a broken machine
    return Podman()


@pytest.fixture(scope="session")
def bridge_image(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_image(podman, tmp_path_factory.mktemp("image-build"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS.steps or TIMINGS.notes:
        terminalreporter.section("bridge image (tests/image)")
        for step, seconds in TIMINGS.steps.items():
            terminalreporter.write_line(f"{step}: {seconds:.1f} s")
        for what, value in TIMINGS.notes.items():
            terminalreporter.write_line(f"{what}: {value}")
