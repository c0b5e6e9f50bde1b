"""SIP over TLS 1.3 (OpenSSL 3), SRTP offered or required, and the RFC 7081 §7 judgement
made from what pjsip really did, not from what the caller wrote."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bridge.core.events import LegJoined
from bridge.devstack.ports import free_udp_tcp_port
from bridge.sip import devpeers as dp
from tests.sip.conftest import PoolHarness
from tests.sip.rawsip import RawUac

CRYPTO = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n"


def srtp_offer(port: int) -> str:
    return (
        "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n{CRYPTO}"
    )


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return dp.make_certificate(tmp_path / "tls")


def tls_pool(make_pool: Callable[..., PoolHarness], cert: tuple[Path, Path], **sip: object
             ) -> PoolHarness:  # fmt: skip
    settings = {"transports": ["udp", "tcp", "tls"], "tls_certificate": cert[0],
                "tls_private_key": cert[1], **sip}  # fmt: skip
    settings.setdefault("tls_port", free_udp_tcp_port())  # fmt: skip
    return make_pool(pool_size=1, calls_per_worker=4, sip_settings=settings)


def handshake(port: int, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-brief", *flags],
        input="", capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip


def test_tls_13_is_spoken_and_old_versions_are_refused(
    make_pool: Callable[..., PoolHarness], certificate: tuple[Path, Path]
) -> None:
    h = tls_pool(make_pool, certificate)
    port = h.pool.sip.tls_port
    best = handshake(port)
    assert "Protocol version: TLSv1.3" in best.stderr, best.stderr
    assert handshake(port, "-tls1_2").returncode == 0  # still allowed by default
    assert handshake(port, "-tls1_1").returncode != 0
    assert handshake(port, "-tls1").returncode != 0


def test_tls_min_version_13_refuses_tls_12(
    make_pool: Callable[..., PoolHarness], certificate: tuple[Path, Path]
) -> None:
    h = tls_pool(make_pool, certificate, tls_min_version="1.3")
    port = h.pool.sip.tls_port
    assert handshake(port, "-tls1_3").returncode == 0
    assert handshake(port, "-tls1_2").returncode != 0


def baresip_call(h: PoolHarness, tmp_path: Path, cert: Path, mediaenc: str) -> LegJoined:
    wav = tmp_path / "quiet.wav"
    dp.write_wav(wav, np.zeros(8000 * 10, np.int16), 8000)
    bs = dp.Baresip(tmp_path / f"baresip{mediaenc}", wav, transport="tls", mediaenc=mediaenc,
                    ca_file=cert)  # fmt: skip
    bs.start(f"sip:demo@127.0.0.1:{h.pool.sip.tls_port};transport=tls", 8)
    try:
        joined = h.wait_for(lambda e: isinstance(e, LegJoined), label="baresip joined")
    except AssertionError:
        raise AssertionError(bs.log_tail()) from None
    finally:
        bs.stop()
    assert isinstance(joined, LegJoined)
    return joined


def test_baresip_over_tls_with_srtp_is_encrypted(
    make_pool: Callable[..., PoolHarness], certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    h = tls_pool(make_pool, certificate)
    leg = baresip_call(h, tmp_path, certificate[0], "srtp-mand")
    assert (leg.transport, leg.srtp, leg.encrypted) == ("tls", True, True)


def test_baresip_over_tls_without_srtp_is_not_encrypted(
    make_pool: Callable[..., PoolHarness], certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    h = tls_pool(make_pool, certificate)
    leg = baresip_call(h, tmp_path, certificate[0], "")
    assert (leg.transport, leg.srtp, leg.encrypted) == ("tls", False, False)


def test_a_via_that_claims_tls_does_not_make_a_udp_call_encrypted(
    make_pool: Callable[..., PoolHarness],
) -> None:
    """The attack: a UDP caller writes 'SIP/2.0/TLS' in its Via and offers RTP/SAVP, so
    that the room is not warned. The bridge goes by the socket the INVITE came on."""
    h = make_pool(pool_size=1, calls_per_worker=4)
    uac = RawUac(h.port)
    try:
        spoofed = f"SIP/2.0/TLS 127.0.0.1:{uac.port};rport;branch=z9hG4bK-spoof"
        uac._via = lambda: spoofed  # type: ignore[method-assign]
        final = uac.invite("demo", sdp=srtp_offer(uac.rtp_port))
        assert final.status == 200, final.raw
        leg = h.wait_for(lambda e: isinstance(e, LegJoined), label="joined")
        assert isinstance(leg, LegJoined)
        assert (leg.transport, leg.srtp, leg.encrypted) == ("udp", True, False)
        uac.in_dialog("BYE")
    finally:
        uac.close()


def test_mandatory_srtp_refuses_a_plain_rtp_sipp_call_with_488(
    make_pool: Callable[..., PoolHarness], tmp_path: Path
) -> None:
    h = make_pool(pool_size=1, calls_per_worker=4, sip_settings={"srtp": "mandatory"})
    result = dp.Sipp(dp.sipp_refused_scenario("demo", 488), h.port, tmp_path / "sipp").run()
    assert result.returncode == 0, result.stdout + result.errors
    assert not h.pool.legs()


def test_mandatory_srtp_accepts_an_srtp_call(make_pool: Callable[..., PoolHarness]) -> None:
    h = make_pool(pool_size=1, calls_per_worker=4, sip_settings={"srtp": "mandatory"})
    uac = RawUac(h.port)
    try:
        final = uac.invite("demo", sdp=srtp_offer(uac.rtp_port))
        assert final.status == 200 and "a=crypto:" in final.body, final.raw
        leg = h.wait_for(lambda e: isinstance(e, LegJoined), label="joined")
        assert isinstance(leg, LegJoined) and leg.srtp and not leg.encrypted  # keys over UDP
        uac.in_dialog("BYE")
    finally:
        uac.close()


def test_a_tls_caller_is_redirected_to_a_workers_tls_port(
    make_pool: Callable[..., PoolHarness], certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    """The front is full: the 302 names the other worker's TLS listener."""
    settings = {"transports": ["udp", "tcp", "tls"], "tls_certificate": certificate[0],
                "tls_private_key": certificate[1], "tls_port": free_udp_tcp_port()}  # fmt: skip
    h = make_pool(pool_size=2, calls_per_worker=1, sip_settings=settings)
    wav = tmp_path / "quiet.wav"
    dp.write_wav(wav, np.zeros(8000 * 15, np.int16), 8000)
    callers = []
    try:
        for n in range(2):
            bs = dp.Baresip(tmp_path / f"bs{n}", wav, transport="tls", ca_file=certificate[0])
            bs.start(f"sip:demo@127.0.0.1:{h.pool.sip.tls_port};transport=tls", 12)
            callers.append(bs)
            h.until(lambda n=n: sum(isinstance(e, LegJoined) for _, e in h.seen) > n,
                    label=f"caller {n} joined")  # fmt: skip
    finally:
        for bs in callers:
            bs.stop()
    joined = [e for _, e in h.seen if isinstance(e, LegJoined)]
    assert {e.worker for e in joined} == {0, 1}
    assert all(e.transport == "tls" for e in joined)
