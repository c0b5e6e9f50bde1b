"""The real ``sipmuc-bridge`` process against a real Prosody and Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge import __version__
from bridge.devstack.ports import free_port
from bridge.devstack.prosody import ProsodyServer
from bridge.devstack.redis_server import RedisServer


def _env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPMUC_")}
    env.update(
        SIPMUC_LOG__FORMAT="json",
        SIPMUC_REDIS__EMBEDDED_DIR=str(tmp_path / "redis"),
        SIPMUC_HTTP__PORT=str(free_port()),
    )
    env.update(settings)
    return env


def _bridge(
    *args: str, env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def _events(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def _xmpp_env(tmp_path: Path, prosody: ProsodyServer, **extra: str) -> dict[str, str]:
    return _env(
        tmp_path,
        SIPMUC_XMPP__PORT=str(prosody.component_port),
        SIPMUC_XMPP__SECRET=prosody.component_secret,
        SIPMUC_XMPP__COMPONENT_JID=prosody.component_domain,
        SIPMUC_XMPP__MUC_SERVICE=prosody.muc_domain,
        **extra,
    )


def test_version() -> None:
    result = _bridge("version", env=dict(os.environ))
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_check_config_masks_secrets(tmp_path: Path) -> None:
    result = _bridge("check-config", env=_env(tmp_path, SIPMUC_XMPP__SECRET="hunter2"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["xmpp"]["secret"] == "**********"
    assert "hunter2" not in result.stdout + result.stderr


def test_invalid_setting_exits_2_naming_the_key(tmp_path: Path) -> None:
    result = _bridge("run", env=_env(tmp_path, SIPMUC_DEMO="1", SIPMUC_SIP__PORT="nope"))
    assert result.returncode == 2
    assert "sip.port (SIPMUC_SIP__PORT)" in result.stderr


def test_unreachable_xmpp_server_exits_3(tmp_path: Path) -> None:
    closed_port = free_port()
    env = _env(tmp_path, SIPMUC_DEMO="1", SIPMUC_XMPP__PORT=str(closed_port))
    result = _bridge("run", env=env)
    assert result.returncode == 3, result.stderr
    (error,) = [e for e in _events(result.stderr) if e["level"] == "error"]
    assert error["event"] == "xmpp.unavailable"
    assert f"127.0.0.1:{closed_port}" in str(error["error"])


def test_wrong_component_secret_exits_3(tmp_path: Path, prosody: ProsodyServer) -> None:
    env = _xmpp_env(tmp_path, prosody)
    env["SIPMUC_XMPP__SECRET"] = "not-the-secret"
    result = _bridge("run", env=env)
    assert result.returncode == 3, result.stderr
    (error,) = [e for e in _events(result.stderr) if e["level"] == "error"]
    assert "refused the component" in str(error["error"])
    assert "not-the-secret" not in result.stderr


def test_unreachable_redis_exits_4(tmp_path: Path, prosody: ProsodyServer) -> None:
    env = _xmpp_env(tmp_path, prosody, SIPMUC_REDIS__URL=f"redis://127.0.0.1:{free_port()}/0")
    result = _bridge("run", env=env)
    assert result.returncode == 4, result.stderr
    assert any(e["event"] == "redis.unavailable" for e in _events(result.stderr))


@pytest.fixture
def running_bridge(
    tmp_path: Path, prosody: ProsodyServer, redis_server: RedisServer
) -> Iterator[subprocess.Popen[str]]:
    env = _xmpp_env(tmp_path, prosody, SIPMUC_REDIS__URL=redis_server.url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "run"],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_run_serves_until_sigterm(
    running_bridge: subprocess.Popen[str], prosody: ProsodyServer
) -> None:
    assert running_bridge.stderr is not None
    seen = []
    for line in running_bridge.stderr:
        event = json.loads(line)
        seen.append(event["event"])
        if event["event"] == "bridge.ready":
            break
    assert "redis.connected" in seen
    assert "xmpp.connected" in seen
    assert "Incoming Jabber component connection" in prosody.log_text()
    running_bridge.send_signal(signal.SIGTERM)
    rest = running_bridge.stderr.read()
    assert running_bridge.wait(timeout=15) == 0
    assert [e["event"] for e in _events(rest)][-1] == "bridge.stopped"


def test_ha1_prints_a_settings_table_that_loads(tmp_path: Path) -> None:
    """``sipmuc-bridge ha1``: the operator's way to an account line; no password in it."""
    from bridge.config import load_settings
    from bridge.core.digest import ha1

    out = subprocess.run(
        [sys.executable, "-m", "bridge", "ha1", "alice", "--realm", "sip.example"],
        input="wonderland\n", capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "wonderland" not in out
    config = tmp_path / "bridge.toml"
    config.write_text("demo = true\n" + out)
    account = load_settings(config).identity.accounts["alice"]
    assert account.ha1_sha256 == ha1("alice", "sip.example", "wonderland", "SHA-256")
    assert account.ha1_md5 == ha1("alice", "sip.example", "wonderland", "MD5")
