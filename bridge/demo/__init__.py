"""``sipmuc-bridge demo``: the whole product on one machine, on loopback, in one command.

It starts a throw-away Prosody (with our ``mod_muc_audio_video_uri`` and a self-signed
certificate made at start, so clients log in over TLS; alice is a server admin, hence owner
of every room), the embedded Redis and a bridge node with one linked room; then two
simulated phones (SIPp streaming espeak-ng sentences as RTP, in a loop) dial in and a chat
user (alice, a slixmpp client) joins, reads the room's disco#info, subscribes to the
conference's events, types, and mutes a caller from the room. The terminal shows it live
(rich), or as plain lines when stdout is not a terminal, including the people you bring in
yourself (``sipmuc-bridge phone``, ``sipmuc-bridge chat`` or any client). Ends on Ctrl-C or
after ``--duration`` seconds.

Everything lives in ``--workdir`` (default ``var/demo``, or ``$SIPMUC_DEMO_DIR``) and is
wiped at the next start: each run begins from a clean room and clean moderation state. While
the demo runs, ``<workdir>/endpoints.json`` says where it listens (our clients read it). The
node's JSON logs go to ``<workdir>/bridge.log`` so that they do not scribble over the display.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from bridge.app import open_node
from bridge.config import LogFormat, LogLevel, LogSettings, Settings
from bridge.demo.callers import CALLERS, DemoCaller, prepare, require_tools
from bridge.demo.chat import ChatUser
from bridge.demo.endpoints import FILE_NAME, Endpoints, default_workdir
from bridge.demo.scenario import DemoFailed, Scenario
from bridge.demo.terminal import output_to
from bridge.demo.view import Board, LiveView, PlainView, Step, View
from bridge.devstack.ports import free_port, free_udp_tcp_port, port_is_free
from bridge.devstack.prosody import ProsodyServer
from bridge.logs import configure, get_logger

DEMO_USERS = {"alice": "alice", "bob": "bob"}
GUEST = "bob"  # the account of whoever joins from outside (sipmuc-bridge chat, any client)
PREFERRED_C2S_PORT = 5222
PREFERRED_SIP_PORT = 5060
DEFAULT_ROOM = "demo"


@dataclass(frozen=True)
class DemoOptions:
    workdir: Path = field(default_factory=default_workdir)
    duration: float = 0.0  # 0 = until Ctrl-C
    plain: bool = False
    room: str = DEFAULT_ROOM
    sip_port: int = 0  # 0 = 5060 when free, else any free port
    xmpp_port: int = 0  # 0 = 5222 when free, else any free port


def _preferred(port: int, is_free: Callable[[int], bool], any_free: Callable[[], int]) -> int:
    return port if is_free(port) else any_free()


def run_demo(options: DemoOptions) -> int:
    """Run the demo; 0 when every step happened (or Ctrl-C), 1 with the reason otherwise."""
    workdir = options.workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)  # a clean room and clean state every run
    workdir.mkdir(parents=True)
    board = Board(title=f"sipmuc-bridge demo — room {options.room!r}")
    plain = options.plain or not sys.stdout.isatty()
    log_path = workdir / "bridge.log"
    try:
        with output_to(log_path) as screen:
            view: View = (
                PlainView(board, screen) if plain else LiveView(board, Console(file=screen))
            )
            with view:
                code = _run_logged(options, workdir, board, view)
    finally:
        (workdir / FILE_NAME).unlink(missing_ok=True)  # no demo listens there any more
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
            c2s_port=options.xmpp_port or _preferred(PREFERRED_C2S_PORT, port_is_free, free_port),
            muc_modules=["muc_audio_video_uri"],
            admins=["alice@localhost"],
            component_secret="demo-secret",
            tls=True,
        )
        await asyncio.to_thread(prosody.start)
    except Exception as error:
        step.status, step.detail = "failed", str(error)
        view.line(f"FAILED {step.title}: {error}")
        return 1
    cert = prosody.certificate
    assert cert is not None  # tls=True
    step.status = "done"
    step.detail = (f"c2s 127.0.0.1:{prosody.c2s_port} (TLS required), MUC "
                   f"{prosody.muc_domain}")  # fmt: skip
    view.line(f"DONE {step.title}: {step.detail}")
    view.line(f"TLS certificate (self-signed, made now): {cert.cert_path}")
    view.line(f"  SHA-256 fingerprint {cert.sha256}")
    log.info("demo.xmpp_server", c2s=f"127.0.0.1:{prosody.c2s_port}", muc=prosody.muc_domain,
             certificate_sha256=cert.sha256)  # fmt: skip
    callers: list[DemoCaller] = []
    try:
        sip_port = options.sip_port or _preferred(
            PREFERRED_SIP_PORT, lambda p: port_is_free(p, udp=True), free_udp_tcp_port
        )
        domain = "127.0.0.1" if sip_port == 5060 else f"127.0.0.1:{sip_port}"
        endpoints = Endpoints(
            room=options.room, muc_jid=f"{options.room}@{prosody.muc_domain}",
            sip_uri=f"sip:{options.room}@{domain}", sip_port=sip_port,
            c2s_port=prosody.c2s_port, guest_user=prosody.jid(GUEST),
            guest_password=DEMO_USERS[GUEST], certificate=str(cert.cert_path),
            certificate_sha256=cert.sha256,
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
            },
            workers={"pool_size": 1},
            redis={"embedded_dir": workdir / "redis"},
            http={"port": free_port()},
            log=LogSettings(format=LogFormat.JSON, level=LogLevel.INFO),
        )
        speech = asyncio.gather(*(
            asyncio.to_thread(prepare, script, options.room, sip_port,
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
            endpoints.save(workdir)
            callers = list(await speech)
            alice = ChatUser(prosody.jid("alice"), DEMO_USERS["alice"], prosody.c2s_port,
                             endpoints.muc_jid, "Alice", ca_file=cert.cert_path)  # fmt: skip
            scenario = Scenario(
                node,
                alice=alice,
                callers=callers,
                endpoints=endpoints,
                board=board,
                view=view,
                notify_dir=workdir / "notifies",
            )
            scenario.control_nick = settings.xmpp.control_nick
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
