"""Creating a job and queueing its task: the one way work enters the system.

The shim, the CLI and beat all call `submit`. The job document is written first, then the
message is sent; if the broker refuses the message the job is failed at once, so no job is
ever left `queued` with nothing behind it.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, Literal

from worker import errors
from worker.celery_app import app
from worker.store import MongoStore, utcnow

log = logging.getLogger("callrail_sync.submit")

JobType = Literal[
    "sync_accounts", "sync_companies", "webhook_list", "webhook_create", "webhook_update"
]

TASKS: dict[str, str] = {
    "sync_accounts": "callrail.sync.accounts",
    "sync_companies": "callrail.sync.companies",
    "webhook_list": "callrail.webhook.list",
    "webhook_create": "callrail.webhook.create",
    "webhook_update": "callrail.webhook.update",
}


class QueueUnavailable(errors.CallRailSyncError):
    """The broker did not take the message; the job was failed, nothing will run."""

    errno = 503


def dedupe_key(owner: str, job_type: str, params: dict[str, Any]) -> str | None:
    """Jobs with the same key share one active job. Only reads are deduplicated."""
    if job_type == "sync_accounts":
        return f"{owner}:accounts"
    if job_type == "sync_companies":
        return f"{owner}:companies:{params['callrail_account_id']}"
    if job_type == "webhook_list":
        return f"{owner}:webhooks:{params['account_id']}:{params['company_id']}"
    return None


def submit(
    store: MongoStore,
    owner: str,
    job_type: JobType,
    params: dict[str, Any],
    *,
    countdown: float | None = None,
) -> tuple[dict[str, Any], bool]:
    """Create (or join) a job and queue it. Returns (job, created).

    Joining a job that beat queued for later (`countdown`) while this caller wants it now
    queues a second message for it at once; whichever message comes second finds the job
    claimed or finished and does nothing.
    """
    not_before = utcnow() + timedelta(seconds=countdown) if countdown else None
    key = dedupe_key(owner, job_type, params)
    job, created = store.create_job(owner, job_type, params, key, not_before=not_before)
    if created:
        _send(store, job, job["_id"], countdown)
    elif countdown is None and store.hurry_job(job["_id"]):
        _send(store, job, f"{job['_id']}.now", None)
    return job, created


def resend(store: MongoStore, job: dict[str, Any], message_id: str) -> None:
    """Queue another message for an existing job (the sweeper's way to revive one)."""
    _send(store, job, message_id, None)


def _send(store: MongoStore, job: dict[str, Any], message_id: str, countdown: float | None) -> None:
    try:
        app.send_task(
            TASKS[job["type"]],
            args=[job["_id"]],
            countdown=countdown,
            task_id=message_id,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )
    except Exception as exc:
        log.error("could not queue job", extra={"job_id": job["_id"], "error": type(exc).__name__})
        message = "The job queue is unavailable; please try again shortly."
        store.finish_job(job["_id"], "failed", error={"errno": 503, "message": message})
        raise QueueUnavailable(message) from None
