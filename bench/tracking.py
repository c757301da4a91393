"""10. What change tracking costs a sync: the same sync of N companies into a MongoDB wire
server (SecantusDB), with tracking and without, first sync and an unchanged resync."""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet

from bench.common import SimProcess, run_sync, runtime_for
from callrail_sync.cli.processes import free_port, mongo_part
from callrail_sync.config import Settings
from callrail_sync.stores import connect


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
                # Into the same snapshots, untracked (`NoTracking`); then tracked, twice.
                plain, _ = run_sync(rt, sim.key, account, rt.stores.snapshots)
                first, added = run_sync(rt, sim.key, account)
                again, unchanged = run_sync(rt, sim.key, account)
                changes = added.result["changes"], unchanged.result["changes"]
                assert changes[0]["added"] == n and changes[1] == {**changes[1], "added": 0}
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
