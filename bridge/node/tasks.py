"""Stopping background tasks without trusting them to stop.

A task that swallows its cancellation (a library catching ``CancelledError`` deep in a
Redis or XMPP call, or a timeout that expired at the same moment) would make an unbounded
``await task`` hang the node's shutdown forever; seen once in CI as a 300 s test timeout.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterable

from bridge.logs import get_logger

log = get_logger(__name__)


async def cancel_all(tasks: Iterable[asyncio.Task[object]], *, within: float = 5.0) -> None:
    """Cancel ``tasks`` and wait up to ``within`` seconds for them to end.

    A task still running then is logged with where it is stuck (``node.task_stuck``),
    cancelled once more and left behind: shutdown goes on.
    """
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    if not pending:
        return
    _, stuck = await asyncio.wait(pending, timeout=within)
    for task in stuck:
        where = io.StringIO()
        task.print_stack(limit=12, file=where)
        log.error("node.task_stuck", task=task.get_name(), within=within,
                  where=where.getvalue()[-2000:])  # fmt: skip
        task.cancel()
