"""The `callrail-sync` command: each verb is a function `cmd_<verb>`, added by `_add_<verb>`;
`main` parses, reads the settings once and runs one. What a user sees is `DESCRIPTION`."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeAlias

from pydantic import ValidationError

from api_shim.auth import DEV_TOKEN_TTL
from callrail_sync import errors
from callrail_sync.cli.insight import add_insight_commands
from callrail_sync.cli.ops import Context, add_account, add_commands, owner_id
from callrail_sync.config import Settings
from callrail_sync.logs import setup_logging

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

DESCRIPTION = """\
Keep the dashboard's CallRail accounts, companies and webhooks in step with CallRail.

Start here:  callrail-sync serve      (the whole service on this machine, with demo data)
Then, with the `export ...` line that serve prints pasted into your shell:
             callrail-sync status     (where each listing stands)
             callrail-sync sync       (sync the demo account's CallRail accounts now)
             callrail-sync jobs       (recent jobs)
"""

EPILOG = """\
--account is a DashClicks account id (24 hex characters). Where a verb takes one, it defaults
to DEMO_ACCOUNT_ID, the account `serve` and `stack` give the demo key (`jobs` lists every
account's); only `keys` must be told which account's key to change. Verbs that read or
change data act on the MongoDB and Redis in MONGO_URL and REDIS_URL.
`callrail-sync VERB --help` tells more.
"""


def token_ttl(value: str) -> int:
    """A token lifetime in seconds: a whole number, at least 1 (the most the service takes,
    JWT_MAX_LIFETIME, is checked once the settings are read)."""
    try:
        seconds = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of seconds") from None
    if seconds < 1:
        raise argparse.ArgumentTypeError(f"{seconds} is out of range: a token lasts 1 s or more")
    return seconds


def cmd_simulator(args: argparse.Namespace, ctx: Context) -> int:
    from simulator import Knobs, SimData, SimServer

    data = SimData(
        seed=args.seed,
        keys=args.keys,
        accounts_per_key=args.accounts,
        companies_per_account=args.companies_per_account,
        disabled_share=args.disabled_share,
        calls_per_company=args.calls_per_company,
        call_days=args.call_days,
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
    p = sub.add_parser(
        "simulator",
        help="run a stand-in for CallRail's API with made-up data",
        description="Run a CallRail v3 stand-in with generated keys, accounts and companies; "
        "it prints its address and each API key.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=8790, help="port to listen on (8790)")
    p.add_argument("--seed", type=int, default=1, help="the same seed makes the same data (1)")
    p.add_argument("--keys", type=int, default=1, help="API keys, each with its own accounts")
    p.add_argument("--accounts", type=int, default=2, help="accounts per key")
    p.add_argument("--companies-per-account", type=int, default=120, help="(120)")
    p.add_argument(
        "--disabled-share", type=float, default=0.1, help="share of companies disabled (0.1)"
    )
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
        "--call-days", type=int, default=29, help="days the made-up calls are spread over"
    )
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
    from callrail_sync.cli.serve import serve

    return serve(ctx.settings, args.host, args.port, Path(args.run_dir))


def _add_serve(sub: Subparsers) -> None:
    p = sub.add_parser(
        "serve",
        help="run the whole service on this machine, with demo data",
        description="Run the API, a worker and the scheduler in one process. Without MONGO_URL, "
        "REDIS_URL or CALLRAIL_BASE_URL it starts its own database, Redis and CallRail "
        "simulator. It prints the address, a token and the line that points the other verbs "
        "at it. Ctrl-C stops it; a sync under way resumes at the next start.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    p.add_argument(
        "--run-dir", default=".run/serve", help="where its data and logs are kept (.run/serve)"
    )
    p.set_defaults(func=cmd_serve)


def cmd_stack(args: argparse.Namespace, ctx: Context) -> int:
    from callrail_sync.cli.stack import StackConfig, run_stack

    config = StackConfig(run_dir=Path(args.run_dir), port=args.port, workers=args.workers)
    return run_stack(ctx.settings, config)


def _add_stack(sub: Subparsers) -> None:
    p = sub.add_parser(
        "stack",
        help="run every part as its own process, as in production",
        description="Run the API, workers, the scheduler and Flower each as its own process, "
        "restarting any that exits. Ctrl-C stops the workers first, then the rest.",
    )
    p.add_argument("--port", type=int, default=8000, help="the API's port (8000)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    p.add_argument("--run-dir", default=".run/stack", help="where its data, logs and pids are kept")
    p.set_defaults(func=cmd_stack)


def cmd_token(args: argparse.Namespace, ctx: Context) -> int:
    """A token the service takes: refused here (rc 2, as argparse refuses) when it would not."""
    from api_shim.auth import DEV_SECRET, issue_token

    settings = ctx.settings
    if settings.jwt_public_key:
        refuse(
            "the service verifies RS256 tokens (JWT_PUBLIC_KEY): sign them with its private "
            "key; this command signs HS256 only"
        )
        return 2
    longest = int(settings.jwt_max_lifetime)
    if args.ttl > longest:
        refuse(
            f"argument --ttl: {args.ttl} is out of range: the service takes tokens that last "
            f"at most {longest} seconds (JWT_MAX_LIFETIME)"
        )
        return 2
    secret = settings.jwt_secret
    if not secret:
        print("JWT_SECRET is not set: signing with the development secret", file=sys.stderr)
        secret = DEV_SECRET
    issuer, audience = settings.jwt_issuer, settings.jwt_audience
    print(issue_token(args.account, secret, args.ttl, issuer=issuer, audience=audience))
    return 0


def refuse(message: str) -> None:
    print("usage: callrail-sync token [-h] [--account ACCOUNT] [--ttl TTL]", file=sys.stderr)
    print(f"callrail-sync token: error: {message}", file=sys.stderr)


def _add_token(sub: Subparsers) -> None:
    p = sub.add_parser(
        "token",
        help="print a token (JWT) to call the API with",
        description="Print a JWT for `Authorization: Bearer ...`, signed with JWT_SECRET (or the "
        "development secret that `serve` uses when it is unset).",
    )
    add_account(p)
    p.add_argument(
        "--ttl",
        type=token_ttl,
        default=DEV_TOKEN_TTL,
        help=f"seconds until it expires ({DEV_TOKEN_TTL}: 7 days, as the token serve prints)",
    )
    p.set_defaults(func=cmd_token)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: every verb, its options and their help."""
    parser = argparse.ArgumentParser(
        prog="callrail-sync",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(title="verbs", dest="command", required=True, metavar="VERB")
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
    return parser


def main(argv: Sequence[str] | None = None, ctx: Context | None = None) -> int:
    """Run one command; `ctx` hands in ready parts (tests), else the environment is read."""
    args = build_parser().parse_args(argv)
    if ctx is None:  # the real entry point: the environment, read once for the whole command
        try:
            ctx = Context(Settings())
        except ValidationError as invalid:  # one line, no traceback (a setting is wrong)
            message = str(invalid.errors()[0]["msg"]).removeprefix("Value error, ")
            print(f"callrail-sync {args.command}: {message}", file=sys.stderr)
            return 2
        if args.command not in ("serve", "simulator", "stack"):
            setup_logging(ctx.settings.log_level, json_lines=ctx.settings.log_json)
    if getattr(args, "account", "") is None and getattr(args, "account_defaults", False):
        args.account = owner_id(ctx.settings.demo_account_id)
    try:
        return int(args.func(args, ctx) or 0)
    except Exception as exc:
        service = unreachable(exc, ctx.settings)
        if service is None:
            raise
        print(f"callrail-sync {args.command}: cannot reach {service}", file=sys.stderr)
        return 1


def unreachable(exc: Exception, settings: Settings) -> str | None:
    """Which service (and at which URL, without credentials) an exception says is out of
    reach: MongoDB or Redis; None for any other failure."""
    from kombu.exceptions import OperationalError
    from pymongo.errors import ConnectionFailure
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeout

    if isinstance(exc, ConnectionFailure):
        return f"MongoDB at {without_credentials(settings.mongo_url or '')}"
    if isinstance(exc, RedisConnectionError | RedisTimeout):
        return f"Redis at {without_credentials(settings.redis_url)}"
    if isinstance(exc, OperationalError | errors.QueueUnavailable):
        return f"the broker (Redis) at {without_credentials(settings.broker)}"
    return None


def without_credentials(url: str) -> str:
    """The URL with any user:password@ taken out (MongoDB URLs may list several hosts)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    return f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"


if __name__ == "__main__":
    sys.exit(main())
