"""Who is calling, at the SIP edge (issue 18): digest challenges from a real worker, with
real SIPp and baresip clients, P-Asserted-Identity only from a trusted peer (127.0.0.2)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bridge.core.admission import RoomDirectory
from bridge.core.caller_gate import CallerPolicy
from bridge.core.caller_identity import AdmitMode, IdentityLevel, TrustedPeers
from bridge.core.digest import Account, ha1
from bridge.core.events import LegJoined
from bridge.sip import devpeers as dp
from tests.sip.conftest import PoolHarness
from tests.sip.rawsip import RawUac

pytestmark = pytest.mark.skipif(shutil.which("sipp") is None, reason="SIPp not installed")

REALM = "127.0.0.1"


def policy(**kw: object) -> CallerPolicy:
    base: dict[str, object] = dict(
        realm=REALM, domain="127.0.0.1",
        accounts={"alice": Account(ha1("alice", REALM, "wonderland", "SHA-256"),
                                   ha1("alice", REALM, "wonderland", "MD5"))},
        peers=TrustedPeers.parse(["127.0.0.2"]), nonce_secret=b"n" * 32,
    )  # fmt: skip
    base.update(kw)
    return CallerPolicy(**base)  # type: ignore[arg-type]


def run_sipp(
    h: PoolHarness, tmp: Path, scenario: str, *args: str, ip: str = "127.0.0.1"
) -> dp.SippResult:
    sipp = dp.Sipp(
        scenario, h.port, tmp, timeout_s=20, extra_args=[*args, "-trace_msg"], local_ip=ip
    )
    return sipp.run()


def joined(h: PoolHarness) -> LegJoined:
    event = h.wait_for(lambda e: isinstance(e, LegJoined), label="joined")
    assert isinstance(event, LegJoined)
    return event


def test_sipp_digest_authenticates(make_pool: Callable[..., PoolHarness], tmp_path: Path) -> None:
    h = make_pool(callers=policy(algorithms=("MD5",)))  # SIPp 3.6 knows MD5 only
    scenario = dp.sipp_identity_scenario("demo", from_user="alice", from_host="127.0.0.1",
                                         authenticate=True, hold_ms=500)  # fmt: skip
    result = run_sipp(h, tmp_path, scenario, "-au", "alice", "-ap", "wonderland")
    assert result.returncode == 0, result.errors
    leg = joined(h)
    assert leg.identity is not None
    assert (leg.identity.level, leg.identity.key) == (
        IdentityLevel.AUTHENTICATED,
        "sip:alice@127.0.0.1",
    )


def test_baresip_digest_md5(make_pool: Callable[..., PoolHarness], tmp_path: Path) -> None:
    """baresip 1.0 (libre 1.x) fails on any SHA-256 challenge, even listed after MD5: an
    operator with such phones sets ``identity.digest_algorithms = ["MD5"]``."""
    h = make_pool(callers=policy(algorithms=("MD5",)))
    wav = tmp_path / "silence.wav"
    dp.write_wav(wav, np.zeros(8000 * 5, np.int16), 8000)
    account = "<sip:alice@127.0.0.1>;auth_pass=wonderland;regint=0;answermode=manual"
    bs = dp.Baresip(tmp_path / "baresip", wav, account=account)
    bs.start(f"sip:demo@127.0.0.1:{h.port}", 8)
    try:
        leg = joined(h)
    finally:
        bs.stop()
    assert leg.identity is not None, bs.log_tail()
    assert leg.identity.level is IdentityLevel.AUTHENTICATED
    assert leg.identity.verified_by == "digest:MD5"


def test_forged_account_from_gets_401_and_never_joins(
    make_pool: Callable[..., PoolHarness], tmp_path: Path
) -> None:
    """Attack: a caller writes the account holder's From and has no password."""
    h = make_pool(callers=policy(algorithms=("MD5",)))
    forged = dp.sipp_identity_scenario("demo", from_user="alice", from_host="127.0.0.1",
                                       expect=401)  # fmt: skip
    assert run_sipp(h, tmp_path / "a", forged).returncode == 0
    # and with a wrong password: 403, no second chance in the same transaction
    wrong = dp.sipp_identity_scenario("demo", from_user="alice", from_host="127.0.0.1",
                                      authenticate=True, expect=403)  # fmt: skip
    result = run_sipp(h, tmp_path / "b", wrong, "-au", "alice", "-ap", "guess")
    assert result.returncode == 0, result.errors
    assert not [e for e in h.drain(0.5) if isinstance(e, LegJoined)]


def test_pai_counts_only_from_a_trusted_peer(
    make_pool: Callable[..., PoolHarness], tmp_path: Path
) -> None:
    """Attack: P-Asserted-Identity from an untrusted address is ignored (and a From is never
    an identity); the same header from the trusted peer 127.0.0.2 asserts the caller."""
    h = make_pool(callers=policy())
    pai = "P-Asserted-Identity: <sip:bob@pbx.example>"
    scenario = dp.sipp_identity_scenario("demo", from_user="bob", from_host="pbx.example",
                                         extra_headers=pai, hold_ms=300)  # fmt: skip
    assert run_sipp(h, tmp_path / "a", scenario).returncode == 0
    outsider = joined(h)
    assert outsider.identity is not None
    assert outsider.identity.level is IdentityLevel.UNVERIFIED
    assert outsider.identity.key == f"unverified:{outsider.leg_id}"
    assert outsider.asserted_identity == ""  # dropped before anything read it
    assert run_sipp(h, tmp_path / "b", scenario, ip="127.0.0.2").returncode == 0
    peer = joined(h)
    assert peer.identity is not None
    assert (peer.identity.level, peer.identity.key) == (
        IdentityLevel.ASSERTED,
        "sip:bob@pbx.example",
    )


def test_verified_only_room_refuses_unverified(
    make_pool: Callable[..., PoolHarness], tmp_path: Path
) -> None:
    h = make_pool(callers=policy(room_admit={"demo": AdmitMode.VERIFIED_ONLY}, accounts={}))
    stranger = dp.sipp_identity_scenario("demo", from_user="eve", expect=403)
    assert run_sipp(h, tmp_path / "a", stranger).returncode == 0
    pai = "P-Asserted-Identity: <sip:bob@pbx.example>"
    via_pbx = dp.sipp_identity_scenario("demo", from_user="bob", extra_headers=pai, hold_ms=300)
    assert run_sipp(h, tmp_path / "b", via_pbx, ip="127.0.0.2").returncode == 0
    assert joined(h).identity is not None


def test_ban_on_source_address_holds_whatever_the_from(
    make_pool: Callable[..., PoolHarness], tmp_path: Path
) -> None:
    """Attack: a banned unverified caller changes From to come back."""
    directory = RoomDirectory.create(["demo"], bans={"demo": ["addr:127.0.0.1"]})
    h = make_pool(callers=policy(), directory=directory)
    for n, user in enumerate(["mallory", "someone-else", "anonymous"]):
        again = dp.sipp_identity_scenario("demo", from_user=user, expect=403)
        assert run_sipp(h, tmp_path / str(n), again).returncode == 0
    # another address (a trusted peer here) is not affected by that ban
    ok = dp.sipp_identity_scenario("demo", from_user="mallory", hold_ms=300)
    assert run_sipp(h, tmp_path / "peer", ok, ip="127.0.0.2").returncode == 0


def _subscribe(h: PoolHarness, uac: RawUac) -> int:
    uac.room = "demo"
    uac.request(
        "SUBSCRIBE", f"sip:demo@127.0.0.1:{h.port}",
        headers=("Event: conference", "Accept: application/conference-info+xml",
                 "Expires: 60"),
    )  # fmt: skip
    return uac.final_response("SUBSCRIBE").status


def test_subscribe_is_gated_like_invite(make_pool: Callable[..., PoolHarness]) -> None:
    """The conference package tells who is in the call: a verified-only room tells only
    verified subscribers, and a From naming an account must prove it."""
    h = make_pool(callers=policy(room_admit={"demo": AdmitMode.VERIFIED_ONLY}, accounts={}))
    stranger = RawUac(h.port, user="eve")
    pbx = RawUac(h.port, user="bob", bind="127.0.0.2",
                 extra_headers=("P-Asserted-Identity: <sip:bob@pbx.example>",))  # fmt: skip
    try:
        assert _subscribe(h, stranger) == 403
        # past the gate: the package answers (404 here: no supervisor publishes the room)
        assert _subscribe(h, pbx) == 404
    finally:
        stranger.close()
        pbx.close()
    h2 = make_pool(callers=policy(algorithms=("MD5",)))
    forger = RawUac(h2.port, user="alice", from_host="127.0.0.1")
    try:
        assert _subscribe(h2, forger) == 401
    finally:
        forger.close()
