"""Operator commands of `callrail-sync`: sync (with live progress), jobs, keys.

They act on the system the environment points at (MONGO_URL, REDIS_URL), like a worker does.
"""

from __future__ import annotations

import argparse
import getpass
import re
import sys
import time
from typing import Any, TextIO

from worker.runtime import runtime
from worker.store import FINAL_STATUSES

OBJECT_ID = re.compile(r"^[0-9a-fA-F]{24}$")


def _owner(value: str) -> str:
    if not OBJECT_ID.match(value):
        raise argparse.ArgumentTypeError("a DashClicks account id is 24 hex characters")
    return value.lower()


def progress_line(job: dict[str, Any], width: int = 24) -> str:
    p = job.get("progress") or {}
    done, total = len(p.get("pages_done") or []), p.get("total_pages")
    filled = int(width * done / total) if total else 0
    bar = "#" * filled + "." * (width - filled)
    pages = f"{done}/{total}" if total else f"{done}/?"
    line = f"[{bar}] pages {pages}  records {p.get('records', 0)}  {job['status']}"
    if job.get("rate_limit_waits"):
        line += f"  rate-limit waits {job['rate_limit_waits']}"
    if job["status"] == "retrying" and job.get("next_retry_at"):
        line += f"  next try {job['next_retry_at']:%H:%M:%S}"
    return line


def watch(
    job_id: str, out: TextIO, interval: float = 0.2, timeout: float | None = None
) -> dict[str, Any]:
    """Show a job's progress until it ends; returns the final job."""
    store = runtime().store
    live = out.isatty()
    last = ""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        job = store.get_job(job_id)
        if job is None:
            raise SystemExit(f"job {job_id} not found")
        line = progress_line(job)
        if line != last:
            out.write(("\r" + line.ljust(len(last))) if live else line + "\n")
            out.flush()
            last = line
        if job["status"] in FINAL_STATUSES or (deadline and time.monotonic() > deadline):
            if live:
                out.write("\n")
            return job
        time.sleep(interval)


def cmd_sync(args: argparse.Namespace) -> int:
    from tasks.submit import submit

    store = runtime().store
    if args.callrail_account:
        job, created = submit(
            store, args.account, "sync_companies", {"callrail_account_id": args.callrail_account}
        )
    else:
        job, created = submit(store, args.account, "sync_accounts", {})
    print(f"job {job['_id']} ({job['type']}){'' if created else ' already running: following it'}")
    if args.no_wait:
        return 0
    final = watch(job["_id"], sys.stdout, timeout=args.timeout)
    if final["status"] == "succeeded":
        counts = (final.get("result") or {}).get("counts", {})
        print(f"succeeded: {counts.get('records', 0)} records in {counts.get('pages', 0)} pages")
        return 0
    if final["status"] == "failed":
        error = final.get("error") or {}
        print(f"failed ({error.get('errno')}): {error.get('message')}")
        return 1
    print(f"still {final['status']} after {args.timeout} s")
    return 2


def cmd_jobs(args: argparse.Namespace) -> int:
    jobs = runtime().store.recent_jobs(args.account, limit=args.limit)
    print(
        f"{'job':<28} {'type':<15} {'status':<10} {'pages':>7} {'records':>8} {'tries':>5}  created"
    )
    for job in jobs:
        p = job.get("progress") or {}
        pages = f"{len(p.get('pages_done') or [])}/{p.get('total_pages') or '?'}"
        created = f"{job['created_at']:%Y-%m-%d %H:%M:%S}"
        print(
            f"{job['_id']:<28} {job['type']:<15} {job['status']:<10} {pages:>7} "
            f"{p.get('records', 0):>8} {job.get('attempts', 0):>5}  {created}"
        )
    if not jobs:
        print("(no jobs)")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from worker.ratelimit import fingerprint

    store = runtime().store
    if args.action == "remove":
        removed = store.remove_api_key(args.account)
        print(f"soft-deleted {removed} key(s) of {args.account}")
        return 0
    if sys.stdin.isatty():
        api_key = getpass.getpass("CallRail API key (not echoed): ").strip()
    else:
        api_key = sys.stdin.readline().strip()
    if not api_key:
        print("no key given", file=sys.stderr)
        return 1
    store.set_api_key(args.account, api_key)
    print(f"stored a key for {args.account} (fingerprint {fingerprint(api_key)})")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sync", help="queue a sync and show its progress until it ends")
    p.add_argument("--account", required=True, type=_owner, help="DashClicks account id")
    p.add_argument("--callrail-account", help="sync this account's companies (else: accounts)")
    p.add_argument("--no-wait", action="store_true", help="queue and return")
    p.add_argument("--timeout", type=float, default=None, help="stop watching after N seconds")
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("jobs", help="list recent jobs")
    p.add_argument("--account", type=_owner, help="only this DashClicks account's")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("keys", help="store or soft-delete a DashClicks account's CallRail key")
    p.add_argument("action", choices=["set", "remove"])
    p.add_argument("--account", required=True, type=_owner)
    p.set_defaults(func=cmd_keys)
