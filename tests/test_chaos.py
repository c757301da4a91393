"""Chaos: fifty syncs while the workers are killed and restarted at random, on a stack of the
module's own (the real topology, as in tests/test_faults.py, which runs beside it)."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from callrail_sync.cli.processes import free_port, wait_until
from callrail_sync.cli.stack import Stack
from callrail_sync.stores import Stores

from .faults import assert_snapshot_whole, new_tenant, simulator, start_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("stack"), port=free_port())
    yield stack
    stack.stop()


@pytest.fixture
def stores(stack: Stack) -> Stores:
    return stack.stores()


def test_chaos_fifty_jobs_while_workers_are_killed_and_restarted(stack, stores, capsys):
    """Fifty syncs while six strikes (SIGKILL or SIGTERM, at random, on a worker that is
    running a job) land spread over the run, the struck worker restarted at once. The strikes
    follow the run's progress, not the clock: a loaded machine gets the same chaos, later, and
    six strikes can cost a job at most six of its MAX_ATTEMPTS (8) runs."""
    rng = random.Random(11)
    # Two to four pages of 25 each (CALLRAIL_PAGE_SIZE in the stack): every job is mid-walk
    # for most of its run.
    tenants = [new_tenant(stack, *(rng.randrange(26, 101) for _ in range(5))) for _ in range(10)]
    simulator(stack).knobs(latency=0.05)
    started_at = time.monotonic()
    jobs = {
        tenant.sync_companies(account): (tenant, account, size)
        for tenant in tenants
        for account, size in zip(tenant.accounts, tenant.sizes, strict=True)
    }
    assert len(jobs) == 50
    strikes = [rng.choice(["SIGKILL", "SIGKILL", "SIGTERM"]) for _ in range(6)]
    chaos: Counter[str] = Counter()

    def finished() -> int:
        return sum(stores.jobs.get(job_id).is_final for job_id in jobs)

    for n, how in enumerate(strikes, start=1):
        # Strike n once n/7 of the jobs have ended, on a worker that is running one of them.
        assert wait_until(lambda n=n: finished() >= len(jobs) * n // 7, 300, 0.2), finished()
        victim = stack.parts[pick_victim(stack, stores, rng)]
        victim.kill() if how == "SIGKILL" else victim.stop(timeout=30)
        chaos[how] += 1
        victim.start(stack.run_dir).wait_ready(60)
        chaos["restarts"] += 1
    assert wait_until(lambda: finished() == len(jobs), 300, 0.2), finished()
    elapsed = time.monotonic() - started_at
    final = {job_id: stores.jobs.get(job_id) for job_id in jobs}
    statuses = Counter(job.status.value for job in final.values())
    attempts = Counter(job.attempts for job in final.values())
    sweeps = sum(job.sweeps for job in final.values())
    with capsys.disabled():  # the figures show in every run, not only when the test fails
        print(
            f"\nchaos: {len(jobs)} jobs in {elapsed:.0f} s; workers killed {chaos['SIGKILL']}x, "
            f"stopped {chaos['SIGTERM']}x, restarted {chaos['restarts']}x; "
            f"statuses {dict(statuses)}; attempts {dict(sorted(attempts.items()))}; "
            f"sweeps {sweeps}"
        )
    assert statuses == {"succeeded": 50}, {j: f.error for j, f in final.items() if f.error}
    assert chaos["SIGKILL"] + chaos["SIGTERM"] == 6
    for tenant, account, size in jobs.values():
        assert_snapshot_whole(stores, tenant, account, size)


def pick_victim(stack: Stack, stores: Stores, rng: random.Random) -> str:
    """A worker whose log says it started a job that is running now (either, if none says)."""
    running = {job.id for job in stores.jobs.recent(limit=100) if job.status == "running"}
    busy = [
        name
        for name in stack.worker_names
        if any(
            f'"message": "job started", "job_id": "{job_id}"' in log
            for log in [stack.parts[name].log_path.read_text(errors="replace")]
            for job_id in running
        )
    ]
    return rng.choice(busy or list(stack.worker_names))
