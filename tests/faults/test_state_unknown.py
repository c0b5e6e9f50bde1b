"""Issue 19: admission fails closed. A room whose bans, lock and PIN cannot be read (Redis
unreachable when the node needs the room's state: start-up, restart, takeover) refuses new
callers with 503 instead of admitting them past a lock, a PIN or a ban."""

from __future__ import annotations

from bridge.devstack.prosody import ProsodyServer
from bridge.devstack.redis_server import RedisServer
from tests.e2e.conftest import ROOM, NodeFactory
from tests.e2e.test_commands import command, owner
from tests.e2e.test_mirroring import caller, dial
from tests.faults.conftest import until


async def test_a_locked_room_whose_state_is_unreadable_refuses_callers(
    make_node: NodeFactory, moderated_prosody: ProsodyServer, redis_server: RedisServer
) -> None:
    async with make_node() as node, owner(moderated_prosody) as alice:
        assert "Locked" in (await command(alice, "!lock")).body
        redis_server.process.pause()
        try:
            node.engine.forget(ROOM)  # the room's state is not cached (restart, takeover)
            node.publish_directory()
            statuses = []
            for _ in range(5):  # the workers get the new snapshot a pipe away
                async with caller(node) as uac:
                    final = await dial(uac)
                statuses.append(final.status)
                if final.status != 403:  # 403: still the snapshot from before
                    break
            assert statuses[-1] == 503, statuses  # never 200: the lock is not forgotten
            assert "state unavailable" in final.first_line.lower()
        finally:
            redis_server.process.resume()
        await until(lambda: node.engine.known(ROOM), "state read again once Redis is back")
        node.publish_directory()
        for _ in range(5):
            async with caller(node) as uac:
                final = await dial(uac)
            if final.status != 503:
                break
        assert final.status == 403, final.first_line  # locked, as stored
