"""A job whose worker is gone is taken up again; a job whose worker is alive but slow is not.

The process running a job beats (`alive_at`) from a thread of its own every third of
JOB_LEASE_SECONDS, whatever its work waits on; the revive check (beat, every third of it) takes
up running jobs that fell silent. The first cases use short thresholds and a worker in threads;
the last kills a real worker process with SIGKILL at the DEFAULT thresholds."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from callrail_sync.cli.processes import free_port, wait_until
from callrail_sync.cli.stack import Stack, StackConfig
from callrail_sync.config import Settings
from tasks.schedule import revive_orphans
from tests.conftest import TEST_SECRET, wait_job

LEASE = 1.5


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"job_lease_seconds": LEASE, "callrail_read_timeout": 10.0})


def test_a_slow_job_keeps_beating_and_is_never_taken_from_its_worker(
    worker, stores, owner, submit_job, sim, sim_data, api_key, runtime, queue
):
    """Each CallRail answer takes longer than the lease twice over: the job's updated_at does
    not move for seconds, yet the revive check, run again and again, leaves it alone."""
    sim.set_knobs(latency=2 * LEASE + 0.5)
    account = sim_data.accounts_by_key[api_key][0]
    job, _ = submit_job(owner, "sync_companies", callrail_account_id=account)
    revived: list[dict] = []
    deadline = time.monotonic() + 60
    while not stores.jobs.get(job.id).is_final:
        assert time.monotonic() < deadline, stores.jobs.get(job.id)
        revived += revive_orphans(runtime, queue)
        time.sleep(LEASE / 4)
    done = stores.jobs.get(job.id)
    assert done.status.value == "succeeded", done.error
    assert revived == [] and done.sweeps == 0 and done.attempts == 1
    assert done.alive_at is not None and done.alive_at > done.started_at


def test_a_running_job_whose_process_fell_silent_is_taken_up_and_finished(
    worker, stores, owner, submit_job, sim_data, api_key, runtime, queue
):
    """A job claimed by a process that then died (it never beats) is requeued by the revive
    check once the lease is out, and the live worker finishes it."""
    account = sim_data.accounts_by_key[api_key][0]
    job, _ = submit_job(owner, "sync_companies", callrail_account_id=account, countdown=3600)
    claimed = stores.jobs.start(job.id, "message-of-a-dead-worker", lease_seconds=LEASE)
    assert claimed is not None and claimed.status.value == "running"
    assert revive_orphans(runtime, queue) == []  # within its lease: left alone
    acted: list[dict] = []
    assert wait_until(lambda: bool(acted.extend(revive_orphans(runtime, queue)) or acted), 10)
    assert acted == [{"job_id": job.id, "action": "requeued"}]
    done = wait_job(stores, job.id)
    assert done.status.value == "succeeded" and done.sweeps == 1, done


# --- at the default thresholds, a real worker process killed ---------------------------------


@pytest.fixture
def default_stack(tmp_path: Path) -> Iterator[Stack]:
    """The stack at default settings (lease, sweep, stale), two workers of one process each."""
    from tests.faults import simulator

    settings = Settings(mongo_url=None, jwt_secret=TEST_SECRET)
    config = StackConfig(
        run_dir=tmp_path / "stack",
        port=free_port(),
        workers=2,
        concurrency=1,
        shim_workers=1,
        flower=False,
        env={
            "JWT_SECRET": TEST_SECRET,
            "LOG_LEVEL": "INFO",
            "PAGE_CONCURRENCY": "2",
            "CALLRAIL_PAGE_SIZE": "25",  # as many pages as with 250, a tenth of the records
        },
        own_redis=True,
    )
    stack = Stack(config, settings).start()
    stack.stores().userconfig.set(settings.demo_account_id, [])
    yield stack
    simulator(stack).knobs(latency=0.0)
    stack.stop()


@pytest.mark.slow
def test_a_worker_killed_with_sigkill_has_its_job_taken_up_within_a_minute(default_stack):
    from tests.faults import new_tenant, simulator, worker_running

    stack = default_stack
    defaults = Settings()
    assert (defaults.job_lease_seconds, defaults.stale_job_seconds) == (30.0, 900.0)
    stores = stack.stores()
    tenant = new_tenant(stack, 150)  # six pages of 25 at 0.5 s: killed after two
    (account,) = tenant.accounts
    simulator(stack).knobs(latency=0.5)
    job_id = tenant.sync_companies(account)
    assert wait_until(lambda: len(stores.jobs.get(job_id).progress.pages_done) >= 2, 60, 0.05)
    victim = worker_running(stack, job_id)
    stack.parts[victim].signal(signal.SIGKILL)  # the main process only: its pool goes with it
    killed = time.monotonic()
    simulator(stack).knobs(latency=0.0)
    taken_up = wait_until(lambda: stores.jobs.get(job_id).is_final, 90, 0.2)
    took = time.monotonic() - killed
    done = stores.jobs.get(job_id)
    assert taken_up and done.status.value == "succeeded", done
    # Revived once by the revive check (or finished by a pool child that outlived its parent).
    assert (done.sweeps, done.attempts) in ((1, 2), (0, 1)), done
    assert took < 75, took
    print(f"\njob finished {took:.1f} s after its worker was killed with SIGKILL")
