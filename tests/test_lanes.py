"""What a user asks for never waits behind beat's periodic syncs."""

from __future__ import annotations

from bson import ObjectId

from callrail_sync.job import JobParams, JobType, Lane
from tasks.submit import submit

from .conftest import run_worker, wait_job


def test_a_users_refresh_starts_before_a_backlog_of_periodic_syncs(
    worker_app, stores, queue, runtime, owner, api_key
):
    periodic = []
    for _ in range(30):
        other = str(ObjectId())
        stores.keys.set(other, api_key)
        job, _ = submit(
            stores.jobs, queue, other, JobType.SYNC_ACCOUNTS, JobParams(), lane=Lane.PERIODIC
        )
        periodic.append(job.id)
    mine, _ = submit(stores.jobs, queue, owner, JobType.SYNC_ACCOUNTS, JobParams())
    with run_worker(worker_app, concurrency=1):
        done = wait_job(stores, mine.id)
        backlog = [wait_job(stores, job_id) for job_id in periodic]
    assert done.status == "succeeded"
    assert all(done.started_at < job.started_at for job in backlog)


def test_a_user_joining_a_planned_sync_moves_it_to_the_users_lane(stores, queue, owner):
    planned, _ = submit(
        stores.jobs, queue, owner, JobType.SYNC_ACCOUNTS, JobParams(), countdown=600,
        lane=Lane.PERIODIC,
    )  # fmt: skip
    joined, created = submit(stores.jobs, queue, owner, JobType.SYNC_ACCOUNTS, JobParams())
    assert not created and joined.id == planned.id
    assert stores.jobs.get(planned.id).lane == Lane.INTERACTIVE
