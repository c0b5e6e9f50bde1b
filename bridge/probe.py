"""``sipmuc-bridge probe``: is a deployed bridge up? The chart's ``helm test`` pod runs it.

Two checks from outside the bridge, as a client sees it: ``/readyz`` answers 200, and a SIP
``OPTIONS`` to the SIP port gets a 2xx. Standard library only (no bridge settings needed).
"""

from __future__ import annotations

import secrets
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProbeResult:
    what: str
    ok: bool
    detail: str


def http_ready(url: str, timeout: float = 5.0) -> ProbeResult:
    """GET ``url``; ok on 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = response.status
            body = response.read(2000).decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return ProbeResult(f"GET {url}", False, f"{error.code}: {error.read(500)!r}")
    except (OSError, ValueError) as error:
        return ProbeResult(f"GET {url}", False, str(error))
    return ProbeResult(f"GET {url}", status == 200, f"{status} {body.strip()[:200]}")


def sip_options(host: str, port: int, timeout: float = 5.0, attempts: int = 3) -> ProbeResult:
    """Out-of-dialog ``OPTIONS sip:<host>:<port>`` over UDP; ok on a 2xx answer."""
    what = f"SIP OPTIONS udp:{host}:{port}"
    try:
        address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0][4]
    except OSError as error:
        return ProbeResult(what, False, f"cannot resolve {host}: {error}")
    family = socket.AF_INET6 if ":" in str(address[0]) else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout / attempts)
        sock.connect(address)
        local_host, local_port = sock.getsockname()[:2]
        call_id = secrets.token_hex(8)
        request = "\r\n".join([
            f"OPTIONS sip:{host}:{port} SIP/2.0",
            f"Via: SIP/2.0/UDP {local_host}:{local_port};rport;branch=z9hG4bK{call_id}",
            "Max-Forwards: 70",
            f"From: <sip:probe@{local_host}>;tag={secrets.token_hex(4)}",
            f"To: <sip:{host}:{port}>",
            f"Call-ID: {call_id}@sipmuc-probe",
            "CSeq: 1 OPTIONS",
            "Accept: application/sdp",
            "Content-Length: 0",
            "",
            "",
        ])  # fmt: skip
        for _ in range(attempts):  # UDP: resend like a SIP client would
            try:
                sock.send(request.encode())
                reply = sock.recv(65535).decode("utf-8", "replace")
            except TimeoutError:
                continue
            except OSError as error:
                return ProbeResult(what, False, str(error))
            first = reply.split("\r\n", 1)[0]
            parts = first.split(" ", 2)
            if len(parts) >= 2 and parts[0] == "SIP/2.0" and parts[1].isdigit():
                return ProbeResult(what, 200 <= int(parts[1]) < 300, first)
            return ProbeResult(what, False, f"not a SIP response: {first[:100]!r}")
    return ProbeResult(what, False, f"no answer within {timeout:g} s")


__all__ = ["ProbeResult", "http_ready", "sip_options"]
