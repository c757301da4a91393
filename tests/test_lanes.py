"""What a user asks for never waits behind beat's periodic syncs."""

from __future__ import annotations

import requests
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


def test_a_user_asking_through_the_shim_hurries_a_planned_sync(
    shim_url, token, stores, queue, owner
):
    """The shim's admission lets a request join an active job for free: one beat planned for
    later must still go now, in the user's lane (not wait out its countdown)."""
    planned, _ = submit(
        stores.jobs, queue, owner, JobType.SYNC_ACCOUNTS, JobParams(), countdown=600,
        lane=Lane.PERIODIC,
    )  # fmt: skip
    answer = requests.get(
        f"{shim_url}/v1/e/callrail/accounts",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 202 and answer.json()["data"]["job_id"] == planned.id
    job = stores.jobs.get(planned.id)
    assert job.lane == Lane.INTERACTIVE and job.not_before is None
