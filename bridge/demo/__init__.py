"""``sipmuc-bridge demo``: the whole product on one machine, on loopback, in one command.

It starts a throw-away Prosody (with our ``mod_muc_audio_video_uri``; alice is a server admin,
hence owner of every room), the embedded Redis and a bridge node with one linked room; then
two simulated phones (SIPp playing espeak-ng sentences as RTP) dial in and a chat user (alice,
a slixmpp client) joins, reads the room's disco#info, subscribes to the conference's events,
types, and mutes a caller from the room. The terminal shows it live (rich), or as plain lines
when stdout is not a terminal. Ends on Ctrl-C or after ``--duration`` seconds, and says how to
connect a real softphone and a real XMPP client.

Everything lives in ``--workdir`` (default ``var/demo``) and is wiped at the next start: each
run begins from a clean room and clean moderation state. The node's JSON logs go to
``<workdir>/bridge.log`` so that they do not scribble over the display.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from rich.console import Console

from bridge.app import open_node
from bridge.config import LogFormat, LogLevel, LogSettings, Settings
from bridge.demo.callers import CALLERS, DEMO_PBX, DemoCaller, prepare, require_tools
from bridge.demo.chat import ChatUser
from bridge.demo.scenario import DemoFailed, Endpoints, Scenario
from bridge.demo.view import Board, LiveView, PlainView, Step, View
from bridge.devstack.ports import free_port, free_udp_tcp_port
from bridge.devstack.prosody import ProsodyServer
from bridge.logs import configure, get_logger

DEMO_USERS = {"alice": "alice", "bob": "bob"}
PREFERRED_C2S_PORT = 5222
PREFERRED_SIP_PORT = 5060
DEFAULT_ROOM = "demo"


@dataclass(frozen=True)
class DemoOptions:
    workdir: Path = Path("var/demo")
    duration: float = 0.0  # 0 = until Ctrl-C
    plain: bool = False
    room: str = DEFAULT_ROOM
    sip_port: int = 0  # 0 = 5060 when free, else any free port
    xmpp_port: int = 0  # 0 = 5222 when free, else any free port


def _tcp_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _sip_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return _tcp_free(port)


def _preferred(port: int, is_free: Callable[[int], bool], any_free: Callable[[], int]) -> int:
    return port if is_free(port) else any_free()


@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[TextIO]:
    """Send fds 1 and 2 (our logs, and the SIP workers' and PJSIP's, which inherit them) to
    ``path``; yield the terminal's original stdout for the display."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    screen = os.fdopen(os.dup(saved[1]), "w", encoding="utf-8", errors="replace")
    with path.open("ab") as log:
        for fd in (1, 2):
            os.dup2(log.fileno(), fd)
    try:
        yield screen
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        screen.close()


def run_demo(options: DemoOptions) -> int:
    """Run the demo; 0 when every step happened (or Ctrl-C), 1 with the reason otherwise."""
    workdir = options.workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)  # a clean room and clean state every run
    workdir.mkdir(parents=True)
    board = Board(title=f"sipmuc-bridge demo — room {options.room!r}")
    plain = options.plain or not sys.stdout.isatty()
    log_path = workdir / "bridge.log"
    with _output_to(log_path) as screen:
        view: View = PlainView(board, screen) if plain else LiveView(board, Console(file=screen))
        with view:
            code = _run_logged(options, workdir, board, view)
    if code != 0:
        print(f"demo failed; the bridge's log is {log_path}", file=sys.stderr)
    return code


def _run_logged(options: DemoOptions, workdir: Path, board: Board, view: View) -> int:
    configure(LogSettings(format=LogFormat.JSON, level=LogLevel.INFO))
    try:
        return asyncio.run(_main(options, workdir, board, view))
    except KeyboardInterrupt:  # Ctrl-C before the event loop took over the signal
        view.line("stopped (Ctrl-C)")
        return 0


async def _main(options: DemoOptions, workdir: Path, board: Board, view: View) -> int:
    log = get_logger("bridge.demo")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = loop.time()

    step = Step("local XMPP server (Prosody + mod_muc_audio_video_uri)", "running")
    board.steps.append(step)
    try:
        require_tools()
        prosody = ProsodyServer(
            workdir / "prosody",
            users=dict(DEMO_USERS),
            c2s_port=options.xmpp_port or _preferred(PREFERRED_C2S_PORT, _tcp_free, free_port),
            muc_modules=["muc_audio_video_uri"],
            admins=["alice@localhost"],
            component_secret="demo-secret",
        )
        await asyncio.to_thread(prosody.start)
    except Exception as error:
        step.status, step.detail = "failed", str(error)
        view.line(f"FAILED {step.title}: {error}")
        return 1
    step.status, step.detail = "done", f"c2s 127.0.0.1:{prosody.c2s_port}, MUC {prosody.muc_domain}"
    view.line(f"DONE {step.title}: {step.detail}")
    log.info("demo.xmpp_server", c2s=f"127.0.0.1:{prosody.c2s_port}", muc=prosody.muc_domain)
    callers: list[DemoCaller] = []
    try:
        sip_port = options.sip_port or _preferred(PREFERRED_SIP_PORT, _sip_free, free_udp_tcp_port)
        domain = "127.0.0.1" if sip_port == 5060 else f"127.0.0.1:{sip_port}"
        endpoints = Endpoints(
            room=options.room, muc_jid=f"{options.room}@{prosody.muc_domain}",
            sip_uri=f"sip:{options.room}@{domain}", sip_port=sip_port,
            c2s_port=prosody.c2s_port, guest_user=prosody.jid("bob"),
            guest_password=DEMO_USERS["bob"],
        )  # fmt: skip
        board.footer = endpoints.how_to_connect()
        settings = Settings(
            demo=True,
            rooms=[options.room],
            xmpp={
                "component_jid": prosody.component_domain,
                "secret": prosody.component_secret,
                "port": prosody.component_port,
                "muc_service": prosody.muc_domain,
            },
            sip={
                "domain": domain,
                "port": sip_port,
                "rtp_port_start": 30000 + (free_port() % 14000) * 2,
                # your own softphone dials from this machine (the scripted phones come
                # through the simulated PBX, a trusted peer: exempt from the caps as well)
                "limits": {"trusted_sources": ["127.0.0.1", "::1"]},
            },
            workers={"pool_size": 1},
            identity={"trusted_peers": [DEMO_PBX]},  # the simulated phones' PBX
            redis={"embedded_dir": workdir / "redis"},
            http={"port": free_port()},
            log=LogSettings(format=LogFormat.JSON, level=LogLevel.INFO),
        )
        seconds = max(options.duration + 30.0, 90.0) if options.duration else 600.0
        speech = asyncio.gather(*(
            asyncio.to_thread(prepare, script, options.room, sip_port, seconds,
                              workdir / "callers" / script.user)
            for script in CALLERS
        ))  # fmt: skip
        step = Step("bridge node (embedded Redis, XMPP component, SIP worker, mixer)", "running")
        board.steps.append(step)
        view.line(f"STEP {step.title} …")
        async with open_node(settings) as node:
            step.status = "done"
            step.detail = f"{endpoints.sip_uri} ⇄ {endpoints.muc_jid}"
            view.line(f"DONE {step.title}: {step.detail}")
            callers = list(await speech)
            alice = ChatUser(prosody.jid("alice"), DEMO_USERS["alice"], prosody.c2s_port,
                             endpoints.muc_jid, "Alice")  # fmt: skip
            scenario = Scenario(
                node,
                alice=alice,
                callers=callers,
                endpoints=endpoints,
                board=board,
                view=view,
                notify_dir=workdir / "notifies",
            )
            try:
                return await _play(scenario, stop, options.duration, started)
            finally:
                if scenario.watcher is not None:
                    scenario.watcher.close()
                await alice.close()
    except DemoFailed:
        return 1
    except Exception as error:
        log.exception("demo.failed")
        view.line(f"FAILED: {type(error).__name__}: {error}")
        return 1
    finally:
        for caller in callers:
            caller.stop()
        await asyncio.to_thread(prosody.stop)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _play(scenario: Scenario, stop: asyncio.Event, duration: float, started: float) -> int:
    """The script, then live until ``duration`` (counted from start) or Ctrl-C."""
    loop = asyncio.get_running_loop()
    script = loop.create_task(scenario.run(), name="demo.script")
    stopped = loop.create_task(stop.wait(), name="demo.stop")
    await asyncio.wait({script, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not script.done():
        script.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await script
        scenario.say("stopped (Ctrl-C) before the end of the script")
        return 0
    stopped.cancel()
    if script.exception() is not None:
        raise script.exception()  # type: ignore[misc]
    scenario.say("every step happened; the meeting goes on")
    if isinstance(scenario.view, PlainView):
        scenario.say(scenario.ep.how_to_connect())
    monitor = loop.create_task(scenario.monitor(), name="demo.monitor")
    try:
        remaining = duration - (loop.time() - started) if duration else None
        if remaining is None or remaining > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), remaining)
    finally:
        monitor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await monitor
    scenario.say("demo finished: stopping the callers, the bridge and Prosody")
    return 0
