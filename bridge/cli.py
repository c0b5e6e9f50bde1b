"""``sipmuc-bridge`` command line: run, check-config, demo, phone, chat, ha1, probe, version."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from bridge import __version__, keeper
from bridge.config import ConfigError, Settings, load_settings, redacted
from bridge.http import HttpUnavailable
from bridge.logs import configure, get_logger
from bridge.privileges import confine, lower_effective
from bridge.sip.pool import PoolError
from bridge.state.connection import RedisUnavailable
from bridge.xmpp.component import XmppUnavailable

EXIT_CONFIG = 2
EXIT_XMPP = 3
EXIT_REDIS = 4
EXIT_HTTP = 5
EXIT_SIP = 6


DESCRIPTION = """\
A conference bridge between SIP audio conferences and XMPP multi-user chat rooms
(RFC 7081): phones dial the room's SIP address, chat users stay in the room, and
moderation done on one side holds on the other.
"""

EPILOG = """\
first steps:
  sipmuc-bridge demo        the whole product on this machine (Ctrl-C stops it)
  sipmuc-bridge phone       while the demo runs: a phone that dials in
  sipmuc-bridge chat        while the demo runs: a chat user in the room
  sipmuc-bridge COMMAND -h  the options of one command
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sipmuc-bridge",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sipmuc-bridge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (
        ("run", "run the bridge service"),
        ("check-config", "validate the configuration and print it with secrets masked"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument(
            "-c", "--config", type=Path, help="TOML settings file (default: $SIPMUC_CONFIG)"
        )
    text = ("the whole product on loopback: Prosody, Redis, the bridge, two simulated phones "
            "and a chat user, shown live")  # fmt: skip
    demo = sub.add_parser("demo", help=text, description=text)
    workdir_help = "the demo's data and logs (default: $SIPMUC_DEMO_DIR or var/demo)"
    demo.add_argument(
        "--workdir", type=Path, default=None,
        help=workdir_help + "; wiped at each start",
    )  # fmt: skip
    demo.add_argument(
        "--duration", type=float, default=0.0, metavar="SECONDS",
        help="stop this many seconds after start, once the script is done (default: Ctrl-C)",
    )  # fmt: skip
    demo.add_argument(
        "--plain", action="store_true",
        help="plain progress lines instead of the live screen (automatic when not a terminal)",
    )  # fmt: skip
    demo.add_argument("--room", default="demo", help="conference/room name (default demo)")
    demo.add_argument(
        "--sip-port", type=int, default=0, metavar="PORT",
        help="SIP port callers dial (default 5060 when free, else any free port)",
    )  # fmt: skip
    demo.add_argument(
        "--xmpp-port", type=int, default=0, metavar="PORT",
        help="XMPP client (c2s) port (default 5222 when free, else any free port)",
    )  # fmt: skip
    ha1_cmd = sub.add_parser(
        "ha1",
        help="print a SIP digest account's settings line (HA1 for SHA-256 and MD5; the "
        "password is read from the terminal or stdin and never printed)",
    )
    ha1_cmd.add_argument("user", help="the account's user name (what the phone sends)")
    ha1_cmd.add_argument("--realm", required=True, help="identity.realm (default: sip.domain)")
    ha1_cmd.add_argument(
        "--format", choices=("toml", "env"), default="toml",
        help="a TOML table for the settings file (default) or an environment variable",
    )  # fmt: skip
    text = ("a headless phone that dials the running demo: it says hello now and then, "
            "records what it hears, and sends what you type as SIP MESSAGE")  # fmt: skip
    phone = sub.add_parser("phone", help=text, description=text)
    phone.add_argument("--workdir", type=Path, default=None, help=workdir_help)
    phone.add_argument("--name", default="Guest", help="your display name (default Guest)")
    phone.add_argument(
        "--uri", default="", help="SIP URI to dial (default: the demo's room, wherever it is)"
    )
    phone.add_argument("--say", default="", metavar="TEXT", help="what the phone says")
    phone.add_argument(
        "--duration", type=float, default=0.0, metavar="SECONDS",
        help="hang up after this many seconds (default: Ctrl-C)",
    )  # fmt: skip
    text = ("a console chat client in the running demo's room (TLS, the demo's guest "
            "account): prints what happens, sends what you type")  # fmt: skip
    chat = sub.add_parser("chat", help=text, description=text)
    chat.add_argument("--workdir", type=Path, default=None, help=workdir_help)
    chat.add_argument("--nick", default="", help="your nick in the room (default Bob)")
    chat.add_argument(
        "--duration", type=float, default=0.0, metavar="SECONDS",
        help="leave after this many seconds (default: Ctrl-C or /quit)",
    )  # fmt: skip
    probe = sub.add_parser(
        "probe",
        help="check a running bridge from outside: /readyz answers 200 and SIP OPTIONS gets "
        "a 2xx (the chart's helm test)",
    )
    probe.add_argument("--http", action="append", default=[], metavar="URL",
                       help="a /readyz URL (repeatable)")  # fmt: skip
    probe.add_argument("--sip", action="append", default=[], metavar="HOST:PORT",
                       help="a SIP UDP address (repeatable)")  # fmt: skip
    probe.add_argument("--timeout", type=float, default=5.0, help="seconds per check")
    sub.add_parser("version", help="print the version", description="print the version")
    return parser


def _ha1(user: str, realm: str, fmt: str) -> int:
    """HA1 lines for ``identity.accounts``: the password itself is never stored."""
    import getpass

    from bridge.core.digest import ha1

    if not user or any(c in user for c in ' "\\:@'):
        print("sipmuc-bridge: the user name must not contain spaces, quotes, : or @",
              file=sys.stderr)  # fmt: skip
        return EXIT_CONFIG
    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline()
    password = password.rstrip("\r\n")
    if not password:
        print("sipmuc-bridge: empty password", file=sys.stderr)
        return EXIT_CONFIG
    sha, md5 = ha1(user, realm, password, "SHA-256"), ha1(user, realm, password, "MD5")
    if fmt == "env":
        value = json.dumps({"ha1_sha256": sha, "ha1_md5": md5})
        print(f"SIPMUC_IDENTITY__ACCOUNTS__{user.upper()}='{value}'")
    else:
        print(f'[identity.accounts."{user}"]  # realm {realm}')
        print(f'ha1_sha256 = "{sha}"')
        print(f'ha1_md5 = "{md5}"')
    return 0


def _probe(urls: list[str], sips: list[str], timeout: float) -> int:
    from bridge.probe import ProbeResult, http_ready, sip_options

    if not urls and not sips:
        print("sipmuc-bridge probe: nothing to check (give --http and/or --sip)", file=sys.stderr)
        return EXIT_CONFIG
    results: list[ProbeResult] = [http_ready(url, timeout) for url in urls]
    for item in sips:
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            print(f"sipmuc-bridge probe: --sip {item!r} is not HOST:PORT", file=sys.stderr)
            return EXIT_CONFIG
        results.append(sip_options(host.strip("[]"), int(port), timeout))
    for result in results:
        print(f"{'ok  ' if result.ok else 'FAIL'} {result.what}: {result.detail}")
    return 0 if all(r.ok for r in results) else 1


def _load(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as error:
        print(f"sipmuc-bridge: {error}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def _run(settings: Settings) -> int:
    from bridge.app import serve  # imports the service stack only when serving

    configure(settings.log)
    log = get_logger("bridge.cli")
    try:
        caps = confine()
    except OSError as error:
        log.error("privileges.confine_failed", error=str(error))
        return EXIT_CONFIG
    log.info("privileges.confined", uid=os.getuid(), effective=caps.names(),
             realtime_capable=caps.sys_nice or os.getuid() == 0)  # fmt: skip
    try:
        asyncio.run(serve(settings))
    except XmppUnavailable as error:
        log.error("xmpp.unavailable", error=str(error))
        return EXIT_XMPP
    except RedisUnavailable as error:
        log.error("redis.unavailable", error=str(error))
        return EXIT_REDIS
    except HttpUnavailable as error:
        log.error("http.unavailable", error=str(error))
        return EXIT_HTTP
    except PoolError as error:
        log.error("sip.unavailable", error=str(error))
        return EXIT_SIP
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"sipmuc-bridge {__version__}")
        return 0
    if args.command == "ha1":
        return _ha1(args.user, args.realm, args.format)
    if args.command in ("demo", "phone", "chat"):
        return _demo_command(args)
    if args.command == "probe":
        return _probe(args.http, args.sip, args.timeout)
    settings = _load(args.config)
    if args.command == "check-config":
        print(json.dumps(redacted(settings), indent=2))
        return 0
    if keeper.wanted():  # PID 1 of a container: a dead supervisor is restarted in place
        return _keep(settings, sys.argv[1:] if argv is None else argv)
    return _run(settings)


def _keep(settings: Settings, argv: list[str]) -> int:
    configure(settings.log)
    log = get_logger("bridge.cli")
    try:
        caps = lower_effective()
    except OSError as error:
        log.error("privileges.confine_failed", error=str(error))
        return EXIT_CONFIG
    log.info("keeper.started", pid=os.getpid(), effective=caps.names())
    return keeper.keep([sys.executable, "-m", "bridge", *argv])


def _demo_command(args: argparse.Namespace) -> int:
    from bridge.demo.endpoints import default_workdir

    workdir = args.workdir or default_workdir()
    if args.command == "phone":
        from bridge.demo.phone import PhoneOptions, run_phone

        return run_phone(PhoneOptions(workdir, args.name, args.uri, args.say, args.duration))
    if args.command == "chat":
        from bridge.demo.chat_client import ChatOptions, run_chat

        return run_chat(ChatOptions(workdir, args.nick, args.duration))
    from bridge.demo import DemoOptions, run_demo

    return run_demo(
        DemoOptions(workdir, args.duration, args.plain, args.room, args.sip_port, args.xmpp_port)
    )


if __name__ == "__main__":
    raise SystemExit(main())
