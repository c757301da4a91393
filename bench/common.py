"""What the benchmarks share: a simulator in its own process, and a sync run in this one."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import redis
import requests

from tasks import sync
from worker.config import Settings
from worker.ratelimit import RequestBudget, Window
from worker.runtime import Runtime
from worker.store import MongoStore, connect

OWNER = "64f1c2a9e4b0a1b2c3d4e5f6"
BENCH_REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")


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
    def control(self) -> str:
        return self.base_url.removesuffix("/v3") + "/_sim"

    def knobs(self, **values: Any) -> None:
        requests.post(f"{self.control}/knobs", json=values, timeout=10).raise_for_status()

    def reset(self) -> None:
        requests.post(f"{self.control}/reset", timeout=10).raise_for_status()

    def stats(self) -> dict[str, Any]:
        return requests.get(f"{self.control}/stats", timeout=10).json()

    def log(self) -> list[dict[str, Any]]:
        return requests.get(f"{self.control}/log", timeout=30).json()["requests"]

    def add_account(self, key: str, companies: int) -> str:
        response = requests.post(
            f"{self.control}/accounts", json={"key": key, "companies": companies}, timeout=60
        )
        response.raise_for_status()
        return str(response.json()["id"])

    @property
    def key(self) -> str:
        return next(iter(self.keys))


def runtime_for(
    base_url: str,
    *,
    concurrency: int = 16,
    store: MongoStore | None = None,
    budget: RequestBudget | None = None,
) -> Runtime:
    settings = Settings(callrail_base_url=base_url, page_concurrency=concurrency)
    return Runtime(settings=settings, store=store or connect(settings), budget=budget)


def run_sync(
    rt: Runtime, api_key: str, callrail_account_id: str | None
) -> tuple[float, dict[str, Any]]:
    """One sync job's work, timed; returns (seconds, outcome)."""
    job_type = "sync_companies" if callrail_account_id else "sync_accounts"
    params = {"callrail_account_id": callrail_account_id} if callrail_account_id else {}
    job, _ = rt.store.create_job(OWNER, job_type, params)
    work = sync.sync_companies_work if callrail_account_id else sync.sync_accounts_work
    started = time.perf_counter()
    outcome = work(rt.store.get_job(job["_id"]) or job, rt, rt.client(api_key))
    return time.perf_counter() - started, outcome


class DiscardingStore(MongoStore):
    """A store whose record writes go nowhere (counted only), standing in for a remote MongoDB
    when measuring the worker's own memory: an in-process store would hold every record."""

    written = 0

    def write_records(self, kind, snapshot_id, owner, records):  # type: ignore[no-untyped-def]
        count = sum(1 for _ in records)
        DiscardingStore.written += count
        return count

    def publish_snapshot(self, snapshot_id, pages):  # type: ignore[no-untyped-def]
        from worker.store import utcnow

        return {
            "synced_at": utcnow(),
            "counts": {"records": DiscardingStore.written, "pages": pages},
        }


def worker_process(
    base_url: str,
    api_key: str,
    accounts: list[str],
    limit: int,
    window: float,
    out: multiprocessing.Queue,
) -> None:  # type: ignore[type-arg]
    budget = RequestBudget(
        redis.Redis.from_url(BENCH_REDIS),
        [Window(limit, window)],
        margin=0.25,
        max_inline_wait=window * 2,
    )
    rt = runtime_for(base_url, budget=budget)
    waited = 0.0
    original = budget.acquire

    def timed_acquire(key: str) -> float:
        nonlocal waited
        spent = original(key)
        waited += spent
        return spent

    budget.acquire = timed_acquire  # type: ignore[method-assign]
    run_sync(rt, api_key, None)
    for account in accounts:
        run_sync(rt, api_key, account)
    out.put(waited)


def memory_child(base_url: str, api_key: str, account: str) -> None:
    import tracemalloc

    from worker.store import connect as real_connect

    settings = Settings(callrail_base_url=base_url)
    store = DiscardingStore(real_connect(settings).db)
    rt = runtime_for(base_url, store=store)
    tracemalloc.start()
    seconds, outcome = run_sync(rt, api_key, account)
    _, peak = tracemalloc.get_traced_memory()
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "peak": peak,
                "rss_kib": rss_kib,
                "records": outcome["result"]["counts"]["records"],
                "seconds": seconds,
            }
        )
    )
