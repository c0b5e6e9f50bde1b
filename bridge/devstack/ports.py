"""Loopback port helpers shared by the local server launchers."""

from __future__ import annotations

import socket
import time


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port that is free on 127.0.0.1 right now (for TCP, or UDP with SOCK_DGRAM)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_udp_tcp_port() -> int:
    """A port free for both UDP and TCP, as a SIP listener needs."""
    for _ in range(50):
        port = free_port(socket.SOCK_DGRAM)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free for both UDP and TCP on 127.0.0.1")


def port_is_free(port: int, *, udp: bool = False, host: str = "127.0.0.1") -> bool:
    """Nothing listens on TCP ``host:port`` (and, with ``udp``, nothing is bound on UDP).

    TCP is probed with ``SO_REUSEADDR``, as every server binds: connections of a stopped
    server that linger in TIME_WAIT do not make the port look taken, so a demo started again
    at once keeps 5222 and 5060. UDP has no TIME_WAIT, and there the option would let the
    probe share a port with another socket that set it, so UDP is probed without it.
    """
    kinds = (socket.SOCK_STREAM, socket.SOCK_DGRAM) if udp else (socket.SOCK_STREAM,)
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as sock:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def wait_tcp(port: int, timeout: float, host: str = "127.0.0.1") -> bool:
    """True once something accepts TCP connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False
