"""What the benchmarks share: a simulator in its own process, and a sync run in this one."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from cryptography.fernet import Fernet

from callrail_sync.budget import RequestBudget, Window
from callrail_sync.callrail.client import CallRailClient
from callrail_sync.cli.processes import free_port, mongo_part
from callrail_sync.config import Settings
from callrail_sync.job import NewJob, sync_job
from callrail_sync.runtime import Runtime, build_runtime
from callrail_sync.stores import Stores
from callrail_sync.stores.changes import ChangeCounts, TrackChecks
from callrail_sync.stores.database import utcnow
from callrail_sync.stores.snapshots import Kind, SnapshotHead, SnapshotWriter
from simulator.control import SimControl
from tasks import sync
from tasks.jobs import Outcome

OWNER = "64f1c2a9e4b0a1b2c3d4e5f6"
BENCH_REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
DEFAULT_CONCURRENCY: int = Settings.model_fields["page_concurrency"].default
"""PAGE_CONCURRENCY as the service runs it unless told otherwise: what the benchmarks measure."""


@dataclass
class SimProcess:
    """`callrail-sync simulator` as a separate process, as CallRail is to our workers."""

    args: list[str]
    proc: subprocess.Popen[str] | None = None
    base_url: str = ""
    keys: dict[str, list[str]] = field(default_factory=dict)

    def __enter__(self) -> SimProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "callrail_sync.cli", "simulator", "--port", "0", *self.args],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("CallRail simulator at "):
                self.base_url = line.split(" at ", 1)[1].strip()
            match = re.match(r"API key (\S+)\s+accounts: (.*)", line)
            if match:
                self.keys[match.group(1)] = [
                    a.strip() for a in match.group(2).split(",") if a.strip()
                ]
            if line.startswith("ready"):
                break
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)

    @property
    def control(self) -> SimControl:
        """The client of the simulator's `/_sim` controls."""
        return SimControl(self.base_url)

    @property
    def key(self) -> str:
        return next(iter(self.keys))

    def cpu_seconds(self) -> float | None:
        """CPU the simulator process has used so far (user + system), from Linux's /proc."""
        if self.proc is None:
            return None
        try:
            with open(f"/proc/{self.proc.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runtime_for(
    base_url: str,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    stores: Stores | None = None,
    budget: RequestBudget | None = None,
) -> Runtime:
    """The parts of a worker: a database of its own on the MongoDB at MONGO_URL (`bench_mongo`
    starts one), BENCH_REDIS."""
    settings = Settings(
        callrail_base_url=base_url,
        page_concurrency=concurrency,
        redis_url=BENCH_REDIS,
        mongo_db=f"bench_{uuid.uuid4().hex[:12]}",
        secrets_keys=Fernet.generate_key().decode(),  # a fresh database: a key of its own
        # No quota unless a benchmark brings its own budget: bench 1 and 2 measure the walk.
        hourly_limit=10**9,
        daily_limit=10**9,
    )
    return build_runtime(settings, stores=stores, budget=budget)


@contextlib.contextmanager
def bench_mongo() -> Iterator[None]:
    """MONGO_URL for every benchmark (and the processes they start): the one set, else
    SecantusDB in a temporary directory."""
    if os.environ.get("MONGO_URL"):
        yield
        return
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        mongo = mongo_part(Path(tmp), port).start(Path(tmp)).wait_ready(60)
        os.environ["MONGO_URL"] = f"mongodb://127.0.0.1:{port}"
        try:
            yield
        finally:
            del os.environ["MONGO_URL"]
            mongo.stop()


@dataclass(frozen=True, order=True)
class Walk:
    """One walk of an account's companies, timed."""

    seconds: float
    client_cpu: float
    """This process's CPU seconds: the client's alone, the simulator being another process."""
    simulator_cpu: float | None
    """The simulator process's CPU seconds (None where /proc cannot tell)."""
    records: int


def timed_walk(sim: SimProcess, client: CallRailClient, callrail_account_id: str) -> Walk:
    """Walk every page of an account's companies and time it."""
    sim_cpu, cpu, wall = sim.cpu_seconds(), time.process_time(), time.perf_counter()
    records = sum(len(page) for _, page in client.iter_company_pages(callrail_account_id))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    sim_after = sim.cpu_seconds()
    sim_spent = sim_after - sim_cpu if sim_after is not None and sim_cpu is not None else None
    return Walk(wall, cpu, sim_spent, records)


def run_sync(
    rt: Runtime,
    api_key: str,
    callrail_account_id: str | None,
    snapshots: SnapshotWriter | None = None,
) -> tuple[float, Outcome]:
    """One sync job's work, timed (records go to `snapshots`, by default the runtime's)."""
    kind: Kind = "companies" if callrail_account_id else "accounts"
    job_type, params = sync_job(kind, callrail_account_id)
    job, _ = rt.stores.jobs.create(NewJob(owner=OWNER, type=job_type, params=params))
    client = rt.client(api_key)
    started = time.perf_counter()
    if callrail_account_id:
        pages: sync.Pages = client.iter_company_pages(callrail_account_id)
    else:
        pages = client.iter_account_pages()
    into = (snapshots, NoTracking()) if snapshots is not None else None
    outcome = sync.store_pages(job, rt, kind, callrail_account_id, pages, into=into)
    return time.perf_counter() - started, outcome


class DiscardingSnapshots:
    """A `SnapshotWriter` whose records go nowhere (counted only): the worker's own memory
    is measured, not a store's."""

    def __init__(self) -> None:
        self.written = 0

    def begin(self, snapshot_id: str, owner: str, kind: Kind, account: str | None) -> None:
        self.written = 0

    def write_records(
        self, kind: Kind, snapshot_id: str, owner: str, records: Iterable[dict[str, Any]]
    ) -> int:
        count = sum(1 for _ in records)
        self.written += count
        return count

    def verify(self, kind: Kind, snapshot_id: str, inserted: int) -> int:
        return self.written

    def publish(self, snapshot_id: str, pages: int, held: int | None = None) -> SnapshotHead:
        return SnapshotHead(
            snapshot_id=snapshot_id,
            owner=OWNER,
            kind="companies",
            synced_at=utcnow(),
            counts={"records": self.written, "pages": pages},
        )

    def discard(self, snapshot_id: str) -> None:
        self.written = 0


class NoTracking:
    """A `ChangeStore` that tracks nothing, beside `DiscardingSnapshots` (which keeps no
    records to compare)."""

    def track(self, snapshot_id: str, checks: TrackChecks | None = None) -> ChangeCounts:
        return ChangeCounts()


class TimedBudget(RequestBudget):
    """The shared budget, counting the seconds this process waited for it."""

    waited = 0.0

    def acquire(self, api_key: str) -> float:
        spent = super().acquire(api_key)
        self.waited += spent
        return spent


def worker_process(
    base_url: str,
    api_key: str,
    accounts: list[str],
    limit: int,
    window: float,
    out: multiprocessing.Queue[float],
) -> None:
    budget = TimedBudget(
        redis.Redis.from_url(BENCH_REDIS),
        [Window(limit, window)],
        margin=0.25,
        max_inline_wait=3600,  # a benchmark has no task to come back later: it waits in line
    )
    rt = runtime_for(base_url, budget=budget)
    run_sync(rt, api_key, None)
    for account in accounts:
        run_sync(rt, api_key, account)
    out.put(budget.waited)


def memory_in_child(module: str, sim: SimProcess, account: str) -> dict[str, Any]:
    """The figures `module.memory_child` prints (its last line, JSON), run in a fresh process."""
    code = f"import sys; from {module} import memory_child; memory_child(*sys.argv[1:])"
    args = [sys.executable, "-c", code, sim.base_url, sim.key, account]
    child = subprocess.run(args, capture_output=True, text=True, check=True)
    figures: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    return figures


def memory_child(base_url: str, api_key: str, account: str) -> None:
    import tracemalloc

    rt = runtime_for(base_url)
    tracemalloc.start()
    seconds, outcome = run_sync(rt, api_key, account, DiscardingSnapshots())
    _, peak = tracemalloc.get_traced_memory()
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "peak": peak,
                "rss_kib": rss_kib,
                "records": outcome.result["counts"]["records"],
                "seconds": seconds,
            }
        )
    )
