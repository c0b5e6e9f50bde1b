"""Sends the BYEs of a dead worker's dialogs from the supervisor, over UDP.

The worker's SIP port is gone with it (and is rebound by its successor a moment later), so
the supervisor sends from a port of its own on the same address: phones match an in-dialog
request by Call-ID and tags, not by the address it came from (verified with baresip and
SIPp, tests/faults/test_worker_kill.py). One thread per death, one socket, every dialog of
that worker: each BYE is retransmitted per Timer E until a final response or Timer F
(32 s), then the thread ends — nothing outlives Timer F. One ``sip.worker.orphan_bye`` event
per dialog says how it went (``answered`` with the status, ``timeout``, ``unsent``, or
``skipped`` for TCP/TLS: those connections died with the worker, and the phone's own
Contact is not where a TLS phone accepts connections).
"""

from __future__ import annotations

import contextlib
import secrets
import select
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from bridge.logs import get_logger
from bridge.sip import byemsg
from bridge.sip.byemsg import DialogState

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Orphan:
    """One confirmed dialog of the dead worker and the CSeq its BYE gets."""

    leg_id: str
    room: str
    worker: int
    dialog: DialogState
    cseq: int


@dataclass(slots=True)
class _Pending:
    orphan: Orphan
    data: bytes
    addr: tuple[str, int]
    branch: str
    sends: list[float] = field(default_factory=list)  # due times left (monotonic)
    tries: int = 0
    provisional: int = 0


def _resolve(host: str, port: int) -> tuple[str, int]:
    info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    addr = info[0][4]
    return str(addr[0]), int(addr[1])


def _destination(hop: byemsg.Hop, dialog: DialogState) -> tuple[str, int]:
    """The next hop's address; where its name does not resolve (a phone's Contact with a
    host name only its own network knows), the address its INVITE came from."""
    try:
        return _resolve(hop.host, hop.port)
    except OSError:
        if not dialog.route_set and dialog.source[0] and dialog.source[1]:
            return dialog.source
        raise


def send_byes(
    orphans: Sequence[Orphan], *, bind_host: str, via_host: str,
    timer_f: float = byemsg.TIMER_F, stop: threading.Event | None = None,
) -> threading.Thread | None:  # fmt: skip
    """Start the BYEs of ``orphans`` on a thread of their own (``None`` if there are none);
    ``stop`` set (the node shuts down) ends it early, logging what is still open."""
    if not orphans:
        return None
    thread = threading.Thread(
        target=_run, args=(list(orphans), bind_host, via_host, timer_f, stop or threading.Event()),
        name="orphan-bye", daemon=True,
    )  # fmt: skip
    thread.start()
    return thread


def _outcome(o: Orphan, outcome: str, **fields: object) -> None:
    emit = log.info if outcome == "answered" else log.warning
    emit("sip.worker.orphan_bye", leg=o.leg_id, room=o.room, worker=o.worker,
         call_id=o.dialog.call_id, transport=o.dialog.transport, outcome=outcome,
         **fields)  # fmt: skip


def _run(
    orphans: list[Orphan], bind_host: str, via_host: str, timer_f: float, stop: threading.Event
) -> None:
    family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.bind((bind_host, 0))
    except OSError as exc:
        for o in orphans:
            _outcome(o, "unsent", error=f"no socket: {exc}")
        return
    with contextlib.closing(sock):
        port = int(sock.getsockname()[1])
        start = time.monotonic()
        pending: dict[str, _Pending] = {}
        for o in orphans:
            if o.dialog.transport not in ("udp", ""):
                _outcome(o, "skipped", why="its connection died with the worker")
                continue
            branch = "z9hG4bK-orphan-" + secrets.token_hex(8)
            try:
                hop = byemsg.next_hop(o.dialog)
                if hop.transport != "udp":
                    _outcome(o, "skipped", why=f"next hop wants {hop.transport}")
                    continue
                data = byemsg.bye_request(o.dialog, cseq=o.cseq, via_host=via_host or bind_host,
                                          via_port=port, branch=branch)  # fmt: skip
                addr = _destination(hop, o.dialog)
            except (byemsg.DialogError, ValueError, OSError) as exc:
                _outcome(o, "unsent", error=str(exc))
                continue
            due = [start + t for t in byemsg.retransmit_offsets(timer_f=timer_f)]
            pending[branch] = _Pending(o, data, addr, branch, due)
        deadline = start + timer_f
        while pending:
            now = time.monotonic()
            if now >= deadline or stop.is_set():
                break
            for p in pending.values():
                while p.sends and p.sends[0] <= now:
                    p.sends.pop(0)
                    with contextlib.suppress(OSError):
                        sock.sendto(p.data, p.addr)
                        p.tries += 1
            wake = min([deadline, now + 0.25, *(p.sends[0] for p in pending.values() if p.sends)])
            ready, _, _ = select.select([sock], [], [], max(0.0, wake - time.monotonic()))
            if not ready:
                continue
            with contextlib.suppress(OSError):
                data, _ = sock.recvfrom(65535)
                resp = byemsg.parse_response(data)
                p2 = pending.get(resp.branch) if resp is not None else None
                if resp is None or p2 is None or resp.method not in ("BYE", ""):
                    continue
                if resp.status < 200:
                    p2.provisional += 1  # the phone is working on it: keep Timer F running
                    continue
                del pending[resp.branch]
                _outcome(p2.orphan, "answered", status=resp.status, tries=p2.tries,
                         seconds=round(time.monotonic() - start, 3),
                         to=f"{p2.addr[0]}:{p2.addr[1]}")  # fmt: skip
        for p in pending.values():
            outcome = "abandoned" if stop.is_set() else "timeout"  # shutdown before Timer F
            _outcome(p.orphan, outcome, tries=p.tries, provisional=p.provisional,
                     seconds=round(time.monotonic() - start, 3),
                     to=f"{p.addr[0]}:{p.addr[1]}")  # fmt: skip
