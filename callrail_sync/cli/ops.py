"""Operator commands of `callrail-sync`: sync (with live progress), jobs, keys.

They act on the system the settings point at (MONGO_URL, REDIS_URL), like a worker does.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import TextIO

from callrail_sync import errors
from callrail_sync.budget import fingerprint
from callrail_sync.config import Settings
from callrail_sync.ids import is_object_id
from callrail_sync.job import Job, JobStatus, sync_job
from callrail_sync.sealed import SecretsKeysMissing
from callrail_sync.stores import Stores, connect
from callrail_sync.stores.jobs import JobStore
from callrail_sync.streams import RECORD_STREAMS
from celeryconfig import create_celery
from tasks.submit import JobQueue, submit
from tasks.table import CeleryQueue


@dataclass
class Context:
    """What a command works with: the settings, and the stores and queue they point at
    (connected on first use, so `token` or `simulator` never touch Mongo or Redis)."""

    settings: Settings
    given_stores: Stores | None = field(default=None, repr=False)
    given_queue: JobQueue | None = field(default=None, repr=False)

    @cached_property
    def stores(self) -> Stores:
        if self.given_stores is not None:
            return self.given_stores
        if not self.settings.mongo_url:
            raise SystemExit(
                "MONGO_URL is not set: export the MongoDB URL of the service to act on "
                "(callrail-sync serve and callrail-sync stack print it)"
            )
        try:
            return connect(self.settings)
        except SecretsKeysMissing as exc:
            raise SystemExit(f"callrail-sync: {exc}") from None

    @cached_property
    def queue(self) -> JobQueue:
        return self.given_queue or CeleryQueue(create_celery(self.settings))


def owner_id(value: str) -> str:
    if not is_object_id(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a DashClicks account id (24 hex characters)"
        )
    return value.lower()


def add_account(p: argparse.ArgumentParser) -> None:
    """`--account`, the one way: a DashClicks account id, DEMO_ACCOUNT_ID when not given
    (`main` fills it in once the settings are read)."""
    p.add_argument(
        "--account",
        type=owner_id,
        default=None,
        help="DashClicks account id, 24 hex characters (default: DEMO_ACCOUNT_ID)",
    )
    p.set_defaults(account_defaults=True)


def progress_line(job: Job, width: int = 24) -> str:
    p = job.progress
    done, total = len(p.pages_done), p.total_pages
    filled = int(width * done / total) if total else 0
    bar = "#" * filled + "." * (width - filled)
    pages = f"{done}/{total}" if total else f"{done}/?"
    line = f"[{bar}] pages {pages}  records {p.records}  {job.status.value}"
    if job.rate_limit_waits:
        line += f"  rate-limit waits {job.rate_limit_waits}"
    if job.status is JobStatus.RETRYING and job.next_retry_at:
        line += f"  next try {job.next_retry_at:%H:%M:%S}"
    return line


def watch(jobs: JobStore, job_id: str, out: TextIO, timeout: float, interval: float = 0.2) -> Job:
    """Show a job's progress until it ends or `timeout` passes; returns the job as last seen."""
    live = out.isatty()
    last = ""
    deadline = time.monotonic() + timeout
    while True:
        job = jobs.get(job_id)
        if job is None:
            raise SystemExit(f"job {job_id} not found")
        line = progress_line(job)
        if line != last:
            out.write(("\r" + line.ljust(len(last))) if live else line + "\n")
            out.flush()
            last = line
        if job.is_final or time.monotonic() > deadline:
            if live:
                out.write("\n")
            return job
        time.sleep(interval)


def key_problem(stores: Stores, owner: str) -> str | None:
    """Why a job for `owner` could only fail on its key (none, or one CallRail rejected)."""
    record = stores.keys.record(owner)
    if record is None:
        return errors.ApiKeyNotFound().user_message
    if record.rejected_at is not None:
        return errors.ApiKeyRejected(record.rejected_at).user_message
    return None


def cmd_sync(args: argparse.Namespace, ctx: Context) -> int:
    stores, queue = ctx.stores, ctx.queue
    if args.stream and not args.callrail_account:
        print("--stream needs --callrail-account")
        return 2
    problem = key_problem(stores, args.account)
    if problem is not None:  # the sync would fail on it: start none
        print(problem)
        return 1
    kind = args.stream or ("companies" if args.callrail_account else "accounts")
    job_type, params = sync_job(kind, args.callrail_account or None)
    job, created = submit(stores.jobs, queue, args.account, job_type, params)
    following = "" if created else " already running: following it"
    print(f"job {job.id} ({job.type.value}){following}")
    if args.no_wait:
        return 0
    final = watch(stores.jobs, job.id, sys.stdout, timeout=args.timeout)
    if final.status is JobStatus.SUCCEEDED and args.stream:
        print(f"succeeded: {json.dumps((final.result or {}).get('changes', {}))}")
        return 0
    if final.status is JobStatus.SUCCEEDED:
        counts = (final.result or {}).get("counts", {})
        print(f"succeeded: {counts.get('records', 0)} records in {counts.get('pages', 0)} pages")
        return 0
    if final.status is JobStatus.FAILED and final.error:
        print(f"failed ({final.error.errno}): {final.error.message}")
        return 1
    print(f"still {final.status.value} after {args.timeout:g} s (the job goes on)")
    return 2


def cmd_jobs(args: argparse.Namespace, ctx: Context) -> int:
    jobs = ctx.stores.jobs.recent(args.account, limit=args.limit)
    print(
        f"{'job':<28} {'type':<15} {'status':<10} {'pages':>7} {'records':>8} {'tries':>5}  created"
    )
    for job in jobs:
        p = job.progress
        pages = f"{len(p.pages_done)}/{p.total_pages or '?'}"
        created = f"{job.created_at:%Y-%m-%d %H:%M:%S}"
        print(
            f"{job.id:<28} {job.type.value:<15} {job.status.value:<10} {pages:>7} "
            f"{p.records:>8} {job.attempts:>5}  {created}"
        )
    if not jobs:
        print("(no jobs)")
    return 0


def cmd_keys(args: argparse.Namespace, ctx: Context) -> int:
    stores = ctx.stores
    if args.action == "remove":
        removed = stores.keys.remove(args.account)
        print(f"soft-deleted {removed} key(s) of {args.account}")
        return 0
    if sys.stdin.isatty():
        api_key = getpass.getpass("CallRail API key (not echoed): ").strip()
    else:
        api_key = sys.stdin.readline().strip()
    if not api_key:
        print("no key given", file=sys.stderr)
        return 1
    stores.keys.set(args.account, api_key)
    print(f"stored a key for {args.account} (fingerprint {fingerprint(api_key)})")
    return 0


def cmd_reseal(args: argparse.Namespace, ctx: Context) -> int:
    """Write every stored secret again with the newest key of SECRETS_KEYS."""
    stores = ctx.stores
    try:
        keys, secrets = stores.receivers.reseal(), stores.notifications.reseal()
    except SecretsKeysMissing as exc:
        print(f"callrail-sync reseal: {exc}", file=sys.stderr)
        return 2
    print(
        f"resealed with the newest key: {keys} signing keys, {secrets} notification callbacks "
        "(secret and previous secret); the older keys may now leave SECRETS_KEYS"
    )
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "reseal",
        help="write every stored secret again with the newest SECRETS_KEYS key",
        description="Seal every stored secret (CallRail signing keys, notification secrets "
        "and previous secrets) with the first key of SECRETS_KEYS, so that an older key can be "
        "dropped after a rotation (docs/security.md).",
    )
    p.set_defaults(func=cmd_reseal)

    p = sub.add_parser(
        "sync",
        help="sync from CallRail now, showing the progress",
        description="Sync a DashClicks account's CallRail accounts (or, with --callrail-account, "
        "the companies or a stream of one of them) now, and show the progress until it ends. A "
        "sync already under way is followed, not started twice.",
    )
    add_account(p)
    p.add_argument(
        "--callrail-account", help="sync the companies of this CallRail account (ACC...)"
    )
    p.add_argument(
        "--stream",
        choices=list(RECORD_STREAMS),
        help="sync this stream of the CallRail account instead of its companies",
    )
    p.add_argument("--no-wait", action="store_true", help="start it and return at once")
    p.add_argument(
        "--timeout", type=float, default=300.0, help="stop watching after N seconds (300)"
    )
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser(
        "jobs",
        help="list recent jobs: syncs and webhook changes",
        description="List the most recent jobs, newest first, of every account or of one.",
    )
    p.add_argument(
        "--account", type=owner_id, help="only this DashClicks account's (default: every account)"
    )
    p.add_argument("--limit", type=int, default=20, help="how many (20)")
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser(
        "keys",
        help="store or remove a DashClicks account's CallRail API key",
        description="`keys set` reads a CallRail API key (not echoed, or from stdin) and stores "
        "it for the account, replacing the old one; `keys remove` removes it. Only the key's "
        "fingerprint is ever printed.",
    )
    p.add_argument("action", choices=["set", "remove"], help="set or remove")
    p.add_argument(
        "--account",
        required=True,
        type=owner_id,
        help="DashClicks account id, 24 hex characters (always required here)",
    )
    p.set_defaults(func=cmd_keys)
