"""Creating a job and queueing its message: the one way work enters the system.

The shim, the CLI and beat all call `submit`. The job document is written first, then the
message is sent; if the broker refuses the message the job is failed at once, so no job is
ever left `queued` with nothing behind it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta
from typing import Protocol

from callrail_sync import errors
from callrail_sync.job import Job, JobError, JobParams, JobType, Lane, NewJob
from callrail_sync.stores.database import utcnow
from callrail_sync.stores.jobs import JobStore

log = logging.getLogger("callrail_sync.submit")


class JobQueue(Protocol):
    """Where a job's messages go."""

    def send(self, job: Job, message_id: str, countdown: float | None) -> None:
        """Queue one message for the job; raise if the broker does not take it."""


def dedupe_key(owner: str, job_type: JobType, params: JobParams) -> str:
    """Jobs with the same key share one active job: a read of the same resource, or the same
    write asked for again while the first has not ended (a double click, a retrying client)."""
    if job_type is JobType.SYNC_ACCOUNTS:
        return f"{owner}:accounts"
    if job_type is JobType.SYNC_COMPANIES:
        return f"{owner}:companies:{params.callrail_account_id}"
    if job_type is JobType.SYNC_STREAM:
        return f"{owner}:stream:{params.stream}:{params.callrail_account_id}"
    if job_type is JobType.WEBHOOK_LIST:
        return f"{owner}:webhooks:{params.callrail_account_id}:{params.company_id}"
    what = json.dumps(params.model_dump(exclude_none=True), sort_keys=True)
    return f"{owner}:write:{job_type.value}:{hashlib.sha256(what.encode()).hexdigest()[:24]}"


def submit(
    jobs: JobStore,
    queue: JobQueue,
    owner: str,
    job_type: JobType,
    params: JobParams,
    *,
    countdown: float | None = None,
    lane: Lane = Lane.INTERACTIVE,
) -> tuple[Job, bool]:
    """Create (or join) a job and queue it. Returns (job, created).

    Joining a job that beat queued for later (`countdown`) while this caller wants it now
    queues a second message for it at once; whichever message comes second finds the job
    claimed or finished and does nothing.
    """
    not_before = utcnow() + timedelta(seconds=countdown) if countdown else None
    key = dedupe_key(owner, job_type, params)
    new = NewJob(
        owner=owner,
        type=job_type,
        params=params,
        dedupe_key=key,
        not_before=not_before,
        lane=lane,
    )
    job, created = jobs.create(new)
    if created:
        _send(jobs, queue, job, job.id, countdown)
    elif countdown is None and jobs.hurry(job.id):
        # A user joined a sync beat queued for later: it goes now, in the user's lane.
        _send(jobs, queue, job.model_copy(update={"lane": Lane.INTERACTIVE}), f"{job.id}.now", None)
    return job, created


def resend(jobs: JobStore, queue: JobQueue, job: Job, message_id: str) -> None:
    """Queue another message for an existing job (the sweeper's way to revive one)."""
    _send(jobs, queue, job, message_id, None)


def _send(
    jobs: JobStore, queue: JobQueue, job: Job, message_id: str, countdown: float | None
) -> None:
    try:
        queue.send(job, message_id, countdown)
    except Exception as exc:
        log.error("could not queue job", extra={"job_id": job.id, "error": type(exc).__name__})
        failure = errors.QueueUnavailable("The job queue is unavailable; please try again shortly.")
        jobs.fail(job.id, JobError.of(failure))
        raise failure from None
