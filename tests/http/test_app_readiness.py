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
