"""The demo's Prosody offers TLS with a certificate made at start, and requires it."""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from slixmpp import ClientXMPP

from bridge.demo.chat import tls_client
from bridge.devstack.prosody import ProsodyServer

pytestmark = pytest.mark.servers


@pytest.fixture
def tls_prosody(tmp_path: Path) -> Iterator[ProsodyServer]:
    server = ProsodyServer(tmp_path / "prosody", users={"bob": "bob"}, tls=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _client(server: ProsodyServer, ca: Path | None) -> ClientXMPP:
    client = ClientXMPP("bob@localhost", "bob")
    tls_client(client, ca)
    client.connect("127.0.0.1", server.c2s_port)
    return client


def test_the_fingerprint_shown_is_the_certificate_s(tls_prosody: ProsodyServer) -> None:
    cert = tls_prosody.certificate
    assert cert is not None
    der = ssl.PEM_cert_to_DER_cert(cert.cert_path.read_text())
    expected = hashlib.sha256(der).hexdigest().upper()
    assert cert.sha256.replace(":", "") == expected


async def test_a_tls_only_client_that_verifies_the_certificate_logs_in(
    tls_prosody: ProsodyServer,
) -> None:
    cert = tls_prosody.certificate
    assert cert is not None
    client = _client(tls_prosody, cert.cert_path)  # STARTTLS or nothing, verified
    try:
        await client.wait_until("session_start", 15)
        ssl_object = client.transport.get_extra_info("ssl_object")
        assert ssl_object is not None, "logged in without TLS"
        seen = hashlib.sha256(ssl_object.getpeercert(binary_form=True)).hexdigest().upper()
        assert seen == cert.sha256.replace(":", "")
    finally:
        await client.disconnect(wait=1.0)


async def test_a_client_without_tls_cannot_log_in(tls_prosody: ProsodyServer) -> None:
    client = _client(tls_prosody, None)  # plaintext only
    try:
        with pytest.raises(TimeoutError):
            await client.wait_until("session_start", 5)
    finally:
        await client.disconnect(wait=1.0)
