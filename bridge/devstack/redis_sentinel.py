"""A throw-away Redis primary, replicas and Sentinels on loopback (a real failover set-up).

Debian's ``redis-server`` binary runs the Sentinels too (``redis-server sentinel.conf
--sentinel``, what the ``redis-sentinel`` package starts). Sentinel rewrites its own
configuration file, so each one gets a file in the work directory.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from bridge.devstack.ports import free_port
from bridge.devstack.process import ServerProcess, ServerStartError

SERVICE = "sipmuc"


def _binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServerStartError("redis-server is not installed (Debian package redis-server)")
    return binary


@dataclass
class RedisSentinelSet:
    """``replicas`` + 1 data servers (the first starts as primary) and ``sentinels``
    Sentinels with quorum ``sentinels // 2 + 1``; every data server asks ``password``."""

    workdir: Path
    password: str = "data-secret"
    replicas: int = 1
    sentinels: int = 3
    down_after_ms: int = 1000
    failover_timeout_ms: int = 4000
    data_ports: list[int] = field(default_factory=list)
    sentinel_ports: list[int] = field(default_factory=list)
    data: list[ServerProcess] = field(default_factory=list)
    watchers: list[ServerProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir = self.workdir.resolve()

    @property
    def sentinel_addresses(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.sentinel_ports]

    def start(self, timeout: float = 15.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_ports = [free_port() for _ in range(self.replicas + 1)]
        for index, port in enumerate(self.data_ports):
            self.data.append(self._data_server(index, port, timeout))
        self.sentinel_ports = [free_port() for _ in range(self.sentinels)]
        for index, port in enumerate(self.sentinel_ports):
            self.watchers.append(self._sentinel(index, port, timeout))
        self.wait_for_primary(self.data_ports[0], timeout)

    def _data_server(self, index: int, port: int, timeout: float) -> ServerProcess:
        directory = self.workdir / f"data{index}"
        directory.mkdir(exist_ok=True)
        argv = [
            _binary(),
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--dir", str(directory),
            "--save", "",
            "--appendonly", "yes",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--requirepass", self.password,
            "--masterauth", self.password,
        ]  # fmt: skip
        if index:
            argv += ["--replicaof", "127.0.0.1", str(self.data_ports[0])]
        process = ServerProcess(f"redis-{index}", argv, directory / "redis.log", directory)
        process.wait_listening([port], timeout)
        return process

    def _sentinel(self, index: int, port: int, timeout: float) -> ServerProcess:
        directory = self.workdir / f"sentinel{index}"
        directory.mkdir(exist_ok=True)
        conf = directory / "sentinel.conf"
        quorum = self.sentinels // 2 + 1
        conf.write_text(
            f"bind 127.0.0.1\nport {port}\ndir {directory}\ndaemonize no\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.data_ports[0]} {quorum}\n"
            f"sentinel auth-pass {SERVICE} {self.password}\n"
            f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}\n"
            f"sentinel failover-timeout {SERVICE} {self.failover_timeout_ms}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        argv = [_binary(), str(conf), "--sentinel"]
        process = ServerProcess(f"sentinel-{index}", argv, directory / "sentinel.log", directory)
        process.wait_listening([port], timeout)
        return process

    def primary_port(self) -> int | None:
        """The primary the Sentinels agree on right now (the first one that answers)."""
        for port in self.sentinel_ports:
            try:
                with redis.Redis(port=port, socket_timeout=1) as sentinel:
                    address = sentinel.sentinel_get_master_addr_by_name(SERVICE)
            except redis.RedisError:
                continue
            if address:
                return int(address[1])
        return None

    def wait_for_primary(self, port: int, timeout: float) -> None:
        """Until every Sentinel names ``port`` as primary and it has its replicas."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._agreed(port):
                return
            time.sleep(0.1)
        raise ServerStartError(f"Sentinels did not settle on 127.0.0.1:{port} in {timeout:g}s")

    def _agreed(self, port: int) -> bool:
        for sentinel_port in self.sentinel_ports:
            try:
                with redis.Redis(port=sentinel_port, socket_timeout=1) as sentinel:
                    address = sentinel.sentinel_get_master_addr_by_name(SERVICE)
                    if not address or int(address[1]) != port:
                        return False
            except redis.RedisError:
                return False
        try:
            with redis.Redis(port=port, password=self.password, socket_timeout=1) as primary:
                info = primary.info("replication")
        except redis.RedisError:
            return False
        links = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
        online = [link for link in links if link.get("state") == "online"]
        return info.get("role") == "master" and len(online) >= self.replicas

    def cut_replicas(self, primary: int) -> None:
        """Close the primary's replication links (they reconnect by themselves a second
        later): what the primary writes meanwhile reaches no replica."""
        with redis.Redis(port=primary, password=self.password, socket_timeout=2) as server:
            server.client_kill_filter(_type="replica")

    def process_on(self, port: int) -> ServerProcess:
        return self.data[self.data_ports.index(port)]

    def stop(self) -> None:
        for process in [*self.watchers, *self.data]:
            process.stop()


__all__ = ["SERVICE", "RedisSentinelSet"]
