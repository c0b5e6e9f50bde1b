"""Stopping background tasks without trusting them to stop.

A task that swallows its cancellation (a library catching ``CancelledError`` deep in a
Redis or XMPP call, or a timeout that expired at the same moment) would make an unbounded
``await task`` hang the node's shutdown forever; seen once in CI as a 300 s test timeout.
The one found (issue 22): Python 3.11's ``asyncio.wait_for`` returns the awaited result
instead of raising when the cancel and the result arrive in the same loop turn; the node's
event loops waited for a puppet's join that way and went on serving. The code uses
``asyncio.timeout`` instead; this cut-off stays as the safety net, and a stuck task is an
error (logged with its stack, counted in ``sipmuc_errors_total``).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterable

from bridge import metrics
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
        metrics.count_error("core", "node.task_stuck")
        task.cancel()
