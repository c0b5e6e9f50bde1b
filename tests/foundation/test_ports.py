"""The demo's preferred ports stay put when it is started again at once."""

from __future__ import annotations

import socket

from bridge.devstack.ports import free_port, port_is_free


def _time_wait_on(port: int) -> socket.socket:
    """Leave a connection to ``port`` in TIME_WAIT there (the server side closes first, as
    a stopped Prosody does), with nothing listening any more."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen()
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # active close on the server's side: TIME_WAIT on 127.0.0.1:port
    server.close()
    client.recv(1)  # sees the FIN
    return client


def test_a_port_in_time_wait_counts_as_free() -> None:
    port = free_port()
    client = _time_wait_on(port)
    try:
        assert port_is_free(port)
    finally:
        client.close()


def test_a_listening_port_is_taken() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert not port_is_free(sock.getsockname()[1])


def test_udp_bound_port_is_taken_for_sip() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert not port_is_free(port, udp=True)
