"""Self-signed certificates for the local servers (the demo's Prosody offers STARTTLS).

A fresh key and certificate at every start: nothing secret is kept between runs, and the
fingerprint shown on screen is the one a client sees. ``cryptography`` does the work.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALID_DAYS = 30


@dataclass(frozen=True)
class Certificate:
    """A PEM certificate and key on disk, with the SHA-256 fingerprint clients compare."""

    cert_path: Path
    key_path: Path
    sha256: str  # "AB:CD:…" as clients print it


def fingerprint(der: bytes) -> str:
    """SHA-256 fingerprint of a DER certificate, colon-separated upper-case hex."""
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return ":".join(f"{b:02X}" for b in digest.finalize())


def self_signed(directory: Path, name: str, *, alt_names: tuple[str, ...] = ()) -> Certificate:
    """Write ``<name>.crt`` and ``<name>.key`` (P-256, valid 30 days) into ``directory``.

    The subject alternative names are ``name``, ``alt_names`` and 127.0.0.1, so that a
    client that verifies the host name accepts it for the domain and for the address.
    """
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in (name, *alt_names)]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Certificate(
        cert_path, key_path, fingerprint(cert.public_bytes(serialization.Encoding.DER))
    )
