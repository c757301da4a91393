"""`callrail-sync` command line. Each subcommand is a small function; `main` dispatches."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TypeAlias

from callrail_sync.cli.insight import add_insight_commands
from callrail_sync.cli.ops import Context, add_commands
from callrail_sync.config import Settings
from callrail_sync.logs import setup_logging

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def cmd_simulator(args: argparse.Namespace, ctx: Context) -> int:
    from simulator import Knobs, SimData, SimServer

    data = SimData(
        seed=args.seed,
        keys=args.keys,
        accounts_per_key=args.accounts,
        companies_per_account=args.companies_per_account,
        disabled_share=args.disabled_share,
        calls_per_company=args.calls_per_company,
    )
    limits = [(args.hourly_limit, 3600.0)] if args.hourly_limit else []
    if args.daily_limit:
        limits.append((args.daily_limit, 86400.0))
    knobs = Knobs(
        latency=args.latency / 1000.0,
        rate_limits=limits,
        send_retry_after=args.retry_after,
        failure_rate=args.failure_rate,
        post_call_delay=args.post_call_delay,
        delivery_drop_rate=args.delivery_drop_rate,
        disable_after_failures=args.disable_after_failures,
    )
    server = SimServer(data, host=args.host, port=args.port, knobs=knobs)
    print(f"CallRail simulator at {server.base_url}", flush=True)
    print(f"controls: {server.base_url.removesuffix('/v3')}/_sim/stats | /_sim/reset | /_sim/knobs")
    for key in data.api_keys:
        accounts = ", ".join(data.accounts_by_key[key])
        print(f"API key {key}  accounts: {accounts}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.start()
    print("ready", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    server.stop()
    return 0


def _add_simulator(sub: Subparsers) -> None:
    p = sub.add_parser("simulator", help="run the CallRail v3 simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8790)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keys", type=int, default=1, help="API keys, each with its own accounts")
    p.add_argument("--accounts", type=int, default=2, help="accounts per key")
    p.add_argument("--companies-per-account", type=int, default=120)
    p.add_argument("--disabled-share", type=float, default=0.1)
    p.add_argument("--latency", type=float, default=0.0, help="milliseconds added to each request")
    p.add_argument(
        "--hourly-limit",
        type=int,
        default=0,
        help="requests per CallRail account per hour (0: none)",
    )
    p.add_argument(
        "--daily-limit", type=int, default=0, help="requests per CallRail account per day (0: none)"
    )
    p.add_argument("--retry-after", action="store_true", help="send Retry-After with 429")
    p.add_argument("--failure-rate", type=float, default=0.0, help="share of requests that fail")
    p.add_argument("--calls-per-company", type=int, default=0, help="calls made up per company")
    p.add_argument(
        "--post-call-delay", type=float, default=0.0, help="seconds from pre_call to post_call"
    )
    p.add_argument(
        "--delivery-drop-rate", type=float, default=0.0, help="share of webhook deliveries lost"
    )
    p.add_argument(
        "--disable-after-failures",
        type=int,
        default=0,
        help="failed deliveries in a row that disable an integration (0: never)",
    )
    p.set_defaults(func=cmd_simulator)


def cmd_serve(args: argparse.Namespace, ctx: Context) -> int:
    from pathlib import Path

    from callrail_sync.cli.serve import serve

    return serve(ctx.settings, args.host, args.port, Path(args.run_dir))


def _add_serve(sub: Subparsers) -> None:
    p = sub.add_parser("serve", help="run shim, worker and beat in one process (embedded defaults)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--run-dir", default=".run/serve", help="MongoDB data, Redis, beat schedule")
    p.set_defaults(func=cmd_serve)


def cmd_stack(args: argparse.Namespace, ctx: Context) -> int:
    from pathlib import Path

    from callrail_sync.cli.stack import StackConfig, run_stack

    config = StackConfig(run_dir=Path(args.run_dir), port=args.port, workers=args.workers)
    return run_stack(ctx.settings, config)


def _add_stack(sub: Subparsers) -> None:
    p = sub.add_parser("stack", help="run every part as its own process, as deployed")
    p.add_argument("--port", type=int, default=8000, help="the shim's port")
    p.add_argument("--workers", type=int, default=2, help="Celery worker processes (prefork)")
    p.add_argument("--run-dir", default=".run/stack", help="logs, pids and MongoDB data")
    p.set_defaults(func=cmd_stack)


def cmd_token(args: argparse.Namespace, ctx: Context) -> int:
    from api_shim.auth import DEV_SECRET, issue_token

    settings = ctx.settings
    secret = settings.jwt_secret
    if not secret:
        print("JWT_SECRET is not set: signing with the development secret", file=sys.stderr)
        secret = DEV_SECRET
    print(issue_token(args.account or settings.demo_account_id, secret, args.ttl))
    return 0


def _add_token(sub: Subparsers) -> None:
    p = sub.add_parser("token", help="print a development JWT for a DashClicks account")
    p.add_argument("--account", help="DashClicks account id (24 hex); default DEMO_ACCOUNT_ID")
    p.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    p.set_defaults(func=cmd_token)


def main(argv: Sequence[str] | None = None, ctx: Context | None = None) -> int:
    """Run one command; `ctx` hands in ready parts (tests), else the environment is read."""
    parser = argparse.ArgumentParser(prog="callrail-sync", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    adders: list[Callable[[Subparsers], None]] = [
        _add_serve,
        _add_stack,
        _add_token,
        _add_simulator,
        add_commands,
        add_insight_commands,
    ]
    for add in adders:
        add(sub)
    args = parser.parse_args(argv)
    if ctx is None:  # the real entry point: the environment, read once for the whole command
        ctx = Context(Settings())
        if args.command not in ("serve", "simulator", "stack"):
            setup_logging(ctx.settings.log_level, json_lines=ctx.settings.log_json)
    return int(args.func(args, ctx) or 0)


if __name__ == "__main__":
    sys.exit(main())
