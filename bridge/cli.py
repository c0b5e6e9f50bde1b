"""``sipmuc-bridge`` command line: run, demo, check-config, probe, version."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from bridge import __version__
from bridge.config import ConfigError, Settings, load_settings, redacted
from bridge.http import HttpUnavailable
from bridge.logs import configure, get_logger
from bridge.privileges import confine
from bridge.sip.pool import PoolError
from bridge.state.connection import RedisUnavailable
from bridge.xmpp.component import XmppUnavailable

EXIT_CONFIG = 2
EXIT_XMPP = 3
EXIT_REDIS = 4
EXIT_HTTP = 5
EXIT_SIP = 6


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sipmuc-bridge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "run the bridge service"),
        ("check-config", "validate the configuration and print it with secrets masked"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument(
            "-c", "--config", type=Path, help="TOML settings file (default: $SIPMUC_CONFIG)"
        )
    demo = sub.add_parser(
        "demo",
        help="the whole product on loopback: Prosody, Redis, the bridge, two simulated phones "
        "and a chat user, shown live",
    )
    demo.add_argument(
        "--workdir", type=Path, default=Path("var/demo"),
        help="demo data and logs (wiped at each start; default var/demo)",
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
    sub.add_parser("version", help="print the version")
    return parser


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
    if args.command == "demo":
        from bridge.demo import DemoOptions, run_demo

        return run_demo(
            DemoOptions(
                args.workdir, args.duration, args.plain, args.room, args.sip_port, args.xmpp_port
            )
        )
    if args.command == "probe":
        return _probe(args.http, args.sip, args.timeout)
    settings = _load(args.config)
    if args.command == "check-config":
        print(json.dumps(redacted(settings), indent=2))
        return 0
    return _run(settings)


if __name__ == "__main__":
    raise SystemExit(main())
