"""Settings: env over TOML over defaults; every bad key named; secrets never printed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bridge.config import (
    ConfigError,
    LogFormat,
    Transport,
    WorkerSettings,
    available_cpus,
    load_settings,
    redacted,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("SIPMUC_"):
            monkeypatch.delenv(key)


def test_defaults_need_a_secret_outside_demo() -> None:
    with pytest.raises(ConfigError, match=r"xmpp\.secret is required"):
        load_settings()
    assert load_settings(demo=True).workers.calls_per_worker == 48


def test_default_pool_is_one_worker_per_available_cpu(tmp_path: Path) -> None:
    """The default node carries 48 calls per CPU (docs/capacity.md), not 7 in all."""
    cpus = len(os.sched_getaffinity(0))
    quota = tmp_path / "cpu.max"
    quota.write_text("max 100000\n")
    assert available_cpus(quota) == cpus
    quota.write_text("150000 100000\n")  # a 1.5-CPU container limit → 2 workers
    assert available_cpus(quota) == min(cpus, 2)
    assert available_cpus(tmp_path / "absent") == cpus
    ws = WorkerSettings()
    assert ws.pool_size is None and ws.resolved_pool_size() == available_cpus()
    assert ws.resolved_pool_size() * ws.calls_per_worker == 48 * available_cpus()
    assert WorkerSettings(workers_per_core=0.5).resolved_pool_size() == max(
        1, round(available_cpus() / 2)
    )
    assert WorkerSettings(pool_size=3).resolved_pool_size() == 3


def test_environment_overrides_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "bridge.toml"
    toml.write_text(
        '[xmpp]\nsecret = "from-file"\nport = 5348\n'
        '[sip]\ntransports = ["udp"]\n[log]\nformat = "json"\n'
    )
    monkeypatch.setenv("SIPMUC_XMPP__PORT", "6000")
    settings = load_settings(toml)
    assert settings.xmpp.port == 6000  # env wins
    assert settings.xmpp.secret.get_secret_value() == "from-file"
    assert settings.sip.transports == [Transport.UDP]
    assert settings.log.format is LogFormat.JSON


def test_config_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "b.toml"
    toml.write_text("demo = true\n[workers]\npool_size = 7\n")
    monkeypatch.setenv("SIPMUC_CONFIG", str(toml))
    assert load_settings().workers.pool_size == 7


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        ("SIPMUC_SIP__PORT", "70000", "sip.port (SIPMUC_SIP__PORT)"),
        ("SIPMUC_XMPP__COMPONENT_JID", "user@bad/res", "xmpp.component_jid"),
        ("SIPMUC_WORKERS__POOL_SIZE", "0", "workers.pool_size"),
        ("SIPMUC_REDIS__URL", "http://nope", "redis.url"),
        ("SIPMUC_LOG__LEVEL", "loud", "log.level"),
        ("SIPMUC_SIP__TRANSPORTS", '["udp","tls"]', "tls_certificate"),
    ],
)
def test_bad_values_are_named(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, named: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as error:
        load_settings(demo=True)
    assert named in str(error.value)


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    toml = tmp_path / "b.toml"
    toml.write_text("demo = true\n[xmpp]\nsecrte = 'typo'\n")
    with pytest.raises(ConfigError, match=r"xmpp\.secrte .*unknown setting"):
        load_settings(toml)


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[xmpp\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(broken)


def test_redacted_masks_every_secret() -> None:
    settings = load_settings(xmpp={"secret": "s3cr3t"}, redis={"url": "redis://:pw@127.0.0.1:1/0"})
    dumped = str(redacted(settings))
    assert "s3cr3t" not in dumped
    assert ":pw@" not in dumped


def test_trusted_peers_are_exempt_from_per_source_caps() -> None:
    settings = load_settings(demo=True, identity={"trusted_peers": ["192.0.2.0/24"]},
                             sip={"limits": {"trusted_sources": ["10.0.0.1"]}})  # fmt: skip
    assert settings.sip.limits.trusted_sources == ["10.0.0.1", "192.0.2.0/24"]


def test_dial_out_settings_refuse_a_plan_that_calls_ourselves() -> None:
    with pytest.raises(ConfigError, match="own SIP domain"):
        load_settings(demo=True, sip={"domain": "bridge.example", "dialout": {
            "enabled": True, "number_patterns": ["[0-9]+"], "trunk_domain": "bridge.example"}})
    with pytest.raises(ConfigError, match="allows nothing"):
        load_settings(demo=True, sip={"dialout": {"enabled": True}})
    with pytest.raises(ConfigError, match="no IP literals"):
        load_settings(demo=True, sip={"dialout": {"domains": ["10.0.0.1"]}})
    with pytest.raises(ConfigError, match="not an IP address"):
        load_settings(demo=True, sip={"limits": {"trusted_sources": ["pbx.example"]}})
# --- bind and advertise -------------------------------------------------------------------------


def test_a_wildcard_bind_needs_an_advertised_address() -> None:
    wanted = r"listens on every interface.*SIPMUC_SIP__ADVERTISE_HOST"
    with pytest.raises(ConfigError, match=wanted):
        load_settings(demo=True, sip={"bind_host": "0.0.0.0"})
    settings = load_settings(demo=True, sip={"bind_host": "0.0.0.0", "advertise_host": "10.0.0.5"})
    assert (settings.sip.bind_host, settings.sip.advertised) == ("0.0.0.0", "10.0.0.5")
    assert load_settings(demo=True).sip.advertised == "127.0.0.1"  # the bind address itself


@pytest.mark.parametrize("bad", ["0.0.0.0", "sip:10.0.0.5", "10.0.0.5:5060", "a b"])
def test_an_advertised_address_is_a_plain_host(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"sip\.advertise_host"):
        load_settings(demo=True, sip={"advertise_host": bad})


def test_each_replica_can_advertise_its_own_address() -> None:
    by_node = {"voice-0": "203.0.113.10", "voice-1": "203.0.113.11"}
    sip = {"bind_host": "0.0.0.0", "advertise_by_node": by_node}
    one = load_settings(demo=True, sip=sip, state={"node_id": "voice-1"})
    assert one.sip.advertised == "203.0.113.11"
    with pytest.raises(ConfigError, match="advertise_host"):  # a node not in the map
        load_settings(demo=True, sip=sip, state={"node_id": "voice-7"})


# --- secrets from files -------------------------------------------------------------------------


def test_secrets_are_read_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "secret").write_text("component s3cret\n")  # the newline of `echo` is dropped
    (tmp_path / "puppets").write_text("puppet-key")
    (tmp_path / "password").write_text("p@ss/word")
    monkeypatch.setenv("SIPMUC_XMPP__SECRET_FILE", str(tmp_path / "secret"))
    monkeypatch.setenv("SIPMUC_XMPP__PUPPET_KEY_FILE", str(tmp_path / "puppets"))
    monkeypatch.setenv("SIPMUC_REDIS__URL", "redis://redis.example:6379/0")
    monkeypatch.setenv("SIPMUC_REDIS__PASSWORD_FILE", str(tmp_path / "password"))
    settings = load_settings()
    assert settings.xmpp.secret.get_secret_value() == "component s3cret"
    assert settings.xmpp.puppet_key.get_secret_value() == "puppet-key"
    assert settings.redis.effective_url() == "redis://:p%40ss%2Fword@redis.example:6379/0"
    assert "p@ss" not in str(redacted(settings))


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (None, {}, "cannot read"),
        ("", {}, "is empty"),
        ("x", {"SIPMUC_XMPP__SECRET": "y"}, "set either secret or secret_file"),
    ],
)
def test_bad_secret_files_are_named(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    content: str | None,
    extra: dict[str, str],
    message: str,
) -> None:
    path = tmp_path / "secret"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("SIPMUC_XMPP__SECRET_FILE", str(path))
    for key, value in extra.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=rf"xmpp \(SIPMUC_XMPP\): .*{message}"):
        load_settings()


def test_a_url_from_a_file_is_checked_like_one_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "url").write_text("http://redis.example")
    with pytest.raises(ConfigError, match="must start with redis://"):
        load_settings(demo=True, redis={"url_file": tmp_path / "url"})


# --- Redis Sentinel -----------------------------------------------------------------------------


def test_sentinel_settings() -> None:
    settings = load_settings(
        xmpp={"secret": "s"},
        redis={"sentinels": ["10.0.0.1:26379", "[::1]:26379"], "password": "pw"},
    )
    assert settings.redis.mode == "sentinel"
    with pytest.raises(ConfigError, match=r"redis\.password is required with sentinels"):
        load_settings(xmpp={"secret": "s"}, redis={"sentinels": ["10.0.0.1:26379"]})
    with pytest.raises(ConfigError, match="either url or sentinels"):
        load_settings(demo=True, redis={"sentinels": ["h:1"], "url": "redis://h:6379/0"})
    with pytest.raises(ConfigError, match="is not host:port"):
        load_settings(demo=True, redis={"sentinels": ["h"]})
