"""10. What change tracking costs a sync: the same sync of N companies into a MongoDB wire
server (SecantusDB), with tracking and without, first sync and an unchanged resync."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from cryptography.fernet import Fernet

from bench.common import NoTracking, SimProcess, runtime_for
from callrail_sync.cli.processes import free_port, mongo_part
from callrail_sync.config import Settings
from callrail_sync.job import JobParams, JobType, NewJob
from callrail_sync.runtime import Runtime
from callrail_sync.stores import connect
from tasks import sync

OWNER = "64f1c2a9e4b0a1b2c3d4e5f6"


def timed_sync(rt: Runtime, key: str, account: str, *, track: bool) -> tuple[float, dict[str, int]]:
    params = JobParams(callrail_account_id=account)
    job, _ = rt.stores.jobs.create(NewJob(owner=OWNER, type=JobType.SYNC_COMPANIES, params=params))
    pages = rt.client(key).iter_company_pages(account)
    into = None if track else (rt.stores.snapshots, NoTracking())
    started = time.perf_counter()
    outcome = sync.store_pages(job, rt, "companies", account, pages, into=into)
    return time.perf_counter() - started, outcome.result.get("changes", {})


def bench_tracking(quick: bool) -> None:
    n, runs = (2_000, 1) if quick else (10_000, 3)
    print(
        f"\n10. change tracking's cost: syncs of {n:,} companies into SecantusDB, median of {runs}"
    )
    with tempfile.TemporaryDirectory() as tmp, SimProcess(["--accounts", "0"]) as sim:
        port = free_port()
        mongo = mongo_part(Path(tmp), port).start(Path(tmp)).wait_ready(60)
        try:
            rows: dict[str, list[float]] = {}
            for run in range(runs):
                account = sim.control.add_account(sim.key, n)
                settings = Settings(
                    callrail_base_url=sim.base_url,
                    mongo_url=f"mongodb://127.0.0.1:{port}",
                    mongo_db=f"bench_tracking_{run}",
                    secrets_keys=Fernet.generate_key().decode(),
                )
                rt = runtime_for(sim.base_url, stores=connect(settings))
                plain, _ = timed_sync(rt, sim.key, account, track=False)
                first, added = timed_sync(rt, sim.key, account, track=True)
                again, unchanged = timed_sync(rt, sim.key, account, track=True)
                assert added["added"] == n and unchanged == {**unchanged, "added": 0}
                for label, seconds in (
                    ("without tracking", plain),
                    (f"first sync, tracked ({n:,} added)", first),
                    ("unchanged resync, tracked", again),
                ):
                    rows.setdefault(label, []).append(seconds)
        finally:
            mongo.stop()
    base = statistics.median(rows["without tracking"])
    for label, times in rows.items():
        median = statistics.median(times)
        print(f"   {label:<36} {median:6.2f} s  {median / base:4.2f}x")
