"""serve() wires /readyz to the real dependencies: ready with Prosody, Redis and the SIP
workers up, not
ready (with the reason) once Redis goes away, and the HTTP port closes on shutdown."""

from __future__ import annotations

import asyncio
import json
from contextlib import suppress

from bridge.app import serve
from bridge.config import Settings
from bridge.devstack.ports import free_port, free_udp_tcp_port
from bridge.devstack.prosody import ProsodyServer
from bridge.devstack.redis_server import RedisServer


async def readyz(port: int) -> tuple[int, dict[str, object]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def wait_for_status(port: int, wanted: int) -> dict[str, object]:
    """Poll until /readyz answers ``wanted`` (bounded by the caller's timeout)."""
    while True:
        with suppress(OSError):
            status, body = await readyz(port)
            if status == wanted:
                return body
        await asyncio.sleep(0.05)


async def test_readyz_follows_xmpp_and_redis(
    prosody: ProsodyServer, redis_server: RedisServer
) -> None:
    http_port = free_port()
    settings = Settings(
        xmpp={
            "component_jid": prosody.component_domain,
            "secret": prosody.component_secret,
            "port": prosody.component_port,
        },
        redis={"url": redis_server.url},
        http={"host": "127.0.0.1", "port": http_port},
        sip={"port": free_udp_tcp_port()},
        workers={"pool_size": 1},
    )
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop))
    try:
        async with asyncio.timeout(30):
            body = await wait_for_status(http_port, 200)
        assert body["checks"] == {
            "redis": {"ok": True, "detail": ""},
            "workers": {"ok": True, "detail": ""},
            "xmpp": {"ok": True, "detail": ""},
        }

        redis_server.stop()
        async with asyncio.timeout(30):
            body = await wait_for_status(http_port, 503)
        checks = body["checks"]
        assert isinstance(checks, dict)
        assert checks["redis"]["ok"] is False
        assert checks["redis"]["detail"]
        assert checks["xmpp"]["ok"] is True
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await task
    try:
        await readyz(http_port)
    except OSError:
        pass
    else:
        raise AssertionError("the HTTP port is still open after serve() returned")


async def test_a_full_node_stays_ready(prosody: ProsodyServer, redis_server: RedisServer) -> None:
    """Every call slot taken: the node still redirects, serves SUBSCRIBE/MESSAGE and answers
    the next caller 503 with Retry-After, so it must not page as "not ready"."""
    from tests.sip.rawsip import RawUac

    http_port, sip_port = free_port(), free_udp_tcp_port()
    settings = Settings(
        rooms=["demo"],
        xmpp={
            "component_jid": prosody.component_domain,
            "secret": prosody.component_secret,
            "port": prosody.component_port,
            "muc_service": prosody.muc_domain,
        },
        redis={"url": redis_server.url},
        http={"host": "127.0.0.1", "port": http_port},
        sip={"port": sip_port, "domain": "127.0.0.1", "rtp_port_start": 10000 + sip_port % 20000},
        workers={"pool_size": 1, "calls_per_worker": 1, "media_timeout": 0},
    )
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop))
    caller, next_caller = RawUac(sip_port), RawUac(sip_port)
    try:
        async with asyncio.timeout(30):
            await wait_for_status(http_port, 200)
        assert (await asyncio.to_thread(caller.invite, "demo")).status == 200
        full = await asyncio.to_thread(next_caller.invite, "demo")
        assert full.status == 503 and full.get("Retry-After")
        status, body = await readyz(http_port)
        assert status == 200, body
        await asyncio.to_thread(caller.bye)
    finally:
        caller.close()
        next_caller.close()
        stop.set()
        async with asyncio.timeout(30):
            await task
