"""The lifecycle every job goes through, and the retry policy, in one place.

queued → running → succeeded | failed, with `retrying` (and `next_retry_at`) while a
retriable error waits out its backoff. Which errors are retriable is declared on the error
types (`worker.errors`), never guessed here.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

from celery import Task
from celery.exceptions import Retry, SoftTimeLimitExceeded

import celeryconfig
from tasks.shutdown import StopRequested, stopping
from worker import errors, metrics
from worker.callrail.client import CallRailClient
from worker.ratelimit import BudgetWait
from worker.runtime import Runtime, runtime
from worker.store import utcnow

log = logging.getLogger("callrail_sync.jobs")

Work = Callable[[dict[str, Any], Runtime, CallRailClient], dict[str, Any]]
"""A job's work: given the job, the runtime and a client for the owner's key, returns the
fields to store on the job when it succeeds."""

# A countdown longer than the visibility timeout would be redelivered before it is due.
MAX_COUNTDOWN = celeryconfig.VISIBILITY_TIMEOUT / 2


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, capped; a server's Retry-After wins when it sent one."""

    max_attempts: int = 6
    base: float = 2.0
    cap: float = 300.0

    def delay(self, attempt: int, exc: errors.CallRailSyncError) -> float:
        """Seconds to wait before attempt `attempt + 1`."""
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(MAX_COUNTDOWN, retry_after + self.jitter(1.0))
        ceiling = min(self.cap, self.base * 2 ** max(0, attempt - 1))
        return min(MAX_COUNTDOWN, ceiling / 2 + self.jitter(ceiling / 2))

    def jitter(self, upto: float) -> float:
        """Random spread so that workers hit by the same failure do not retry in step."""
        return random.uniform(0, upto)

    def can_retry(self, attempt: int, exc: errors.CallRailSyncError) -> bool:
        return exc.retriable and attempt < self.max_attempts


def policy_for(rt: Runtime) -> RetryPolicy:
    s = rt.settings
    return RetryPolicy(max_attempts=s.max_attempts, base=s.backoff_base, cap=s.backoff_cap)


def require_api_key(rt: Runtime, owner: str) -> dict[str, Any]:
    """The owner's usable key record, or the error that explains why there is none."""
    record = rt.store.api_key_record(owner)
    if record is None:
        raise errors.ApiKeyNotFound()
    if record.get("invalid_at") is not None:
        raise errors.Unauthorized("the key was rejected by CallRail earlier", status=401)
    return record


def user_error(exc: errors.CallRailSyncError) -> dict[str, Any]:
    return {"errno": exc.errno, "message": exc.user_message}


def run_job(task: Task, job_id: str, work: Work) -> dict[str, Any]:
    """Run `work` for a job, keeping the job document true whatever happens."""
    rt = runtime()
    if stopping():
        # A stopping worker starts nothing: the message goes back for the next worker.
        raise task.retry(countdown=1, exc=None)
    lease = rt.settings.job_lease_seconds
    job = rt.store.start_job(job_id, task.request.id or job_id, lease_seconds=lease)
    if job is None:
        existing = rt.store.get_job(job_id)
        status = existing["status"] if existing else "missing"
        if status == "running":
            # Another message runs it now; come back when its lease would have run out, in
            # case that worker dies. A finished job makes the return visit a no-op.
            raise task.retry(countdown=lease, exc=None)
        log.info("job not runnable", extra={"job_id": job_id, "status": status})
        return {"job_id": job_id, "status": status}
    context = {
        "job_id": job_id,
        "job_type": job["type"],
        "owner": job["owner"],
        "attempt": job["attempts"],
    }
    log.info("job started", extra=context)
    key: dict[str, Any] | None = None
    try:
        key = require_api_key(rt, job["owner"])
        outcome = work(job, rt, rt.client(str(key["api_key"])))
    except errors.RateLimited as exc:
        return _wait_for_budget(task, rt, job, exc, key, context)
    except StopRequested:
        return _hand_back(task, rt, job, context)
    except errors.CallRailSyncError as exc:
        if isinstance(exc, errors.Unauthorized) and key is not None:
            # The spec's token invalidation: no later job spends a request on this key.
            rt.store.mark_api_key_invalid(key["_id"])
        return _on_error(task, rt, job, exc, context)
    except SoftTimeLimitExceeded:
        _fail(rt, job, {"errno": 504, "message": "The job took too long and was stopped."}, context)
        return {"job_id": job_id, "status": "failed"}
    except Exception:
        log.exception("job crashed", extra=context)
        _fail(rt, job, {"errno": 500, "message": "Internal error while running the job."}, context)
        raise
    rt.store.finish_job(job_id, "succeeded", error=None, **outcome)
    metrics.JOBS.labels(job["type"], "succeeded").inc()
    log.info("job succeeded", extra=context)
    return {"job_id": job_id, "status": "succeeded"}


def _on_error(
    task: Task,
    rt: Runtime,
    job: dict[str, Any],
    exc: errors.CallRailSyncError,
    context: dict[str, Any],
) -> dict[str, Any]:
    policy = policy_for(rt)
    if policy.can_retry(job["attempts"], exc):
        delay = policy.delay(job["attempts"], exc)
        rt.store.update_job(
            job["_id"],
            status="retrying",
            error=user_error(exc),
            next_retry_at=utcnow() + timedelta(seconds=delay),
        )
        log.warning(
            "job will retry",
            extra={**context, "error": type(exc).__name__, "countdown": round(delay, 2)},
        )
        _retry(task, rt, job, delay, exc, context)
    _fail(rt, job, user_error(exc), {**context, "error": type(exc).__name__})
    return {"job_id": job["_id"], "status": "failed"}


def _wait_for_budget(
    task: Task,
    rt: Runtime,
    job: dict[str, Any],
    exc: errors.RateLimited,
    key: dict[str, Any] | None,
    context: dict[str, Any],
) -> dict[str, Any]:
    """A 429, or no budget left: wait it out with a countdown. This costs no attempt.

    A real 429 first puts the key into the cooldown that every worker honours. Waits longer
    than MAX_COUNTDOWN are split: the task comes back early, finds the budget still closed,
    and goes back to waiting, so no countdown outlives the broker's visibility timeout.
    """
    wait = exc.retry_after
    if not isinstance(exc, BudgetWait) and rt.budget is not None and key is not None:
        wait = rt.budget.cool_down(str(key["api_key"]), exc.retry_after)
    waits = int(job.get("rate_limit_waits") or 0) + 1
    if waits > rt.settings.max_rate_limit_waits:
        _fail(
            rt,
            job,
            {
                "errno": 429,
                "message": "CallRail's rate limit did not lift; "
                "the job gave up after waiting for it repeatedly.",
            },
            context,
        )
        return {"job_id": job["_id"], "status": "failed"}
    delay = policy_for(rt).delay(job["attempts"], errors.RateLimited("", retry_after=wait or 0.0))
    rt.store.park_for_rate_limit(job["_id"], user_error(exc), utcnow() + timedelta(seconds=delay))
    log.info(
        "job waits for the rate limit",
        extra={
            **context,
            "countdown": round(delay, 2),
            "cooldown": not isinstance(exc, BudgetWait),
        },
    )
    _retry(task, rt, job, delay, exc, context)


def _hand_back(
    task: Task, rt: Runtime, job: dict[str, Any], context: dict[str, Any]
) -> dict[str, Any]:
    """The worker is stopping: requeue the job now; the next run resumes from stored pages."""
    rt.store.requeue_job(job["_id"])
    log.warning("job handed back to the queue (worker stopping)", extra=context)
    try:
        raise task.retry(countdown=0, exc=None)
    except Retry:
        raise
    except Exception as failure:
        # Left queued: the sweeper sends it again.
        log.error("could not requeue job", extra={**context, "error": type(failure).__name__})
        return {"job_id": job["_id"], "status": "queued"}


def _retry(
    task: Task,
    rt: Runtime,
    job: dict[str, Any],
    delay: float,
    exc: errors.CallRailSyncError,
    context: dict[str, Any],
) -> NoReturn:
    """Requeue the task with a countdown; if even that fails, the job fails (never stuck)."""
    try:
        # The tasks are declared with max_retries=None: our own counters decide when to stop.
        raise task.retry(countdown=delay, exc=exc)
    except Retry:
        raise
    except Exception as failure:
        log.error("could not requeue job", extra={**context, "error": type(failure).__name__})
        _fail(rt, job, user_error(exc), context)
        raise


def _fail(rt: Runtime, job: dict[str, Any], error: dict[str, Any], context: dict[str, Any]) -> None:
    rt.store.discard_snapshot(job["_id"])
    rt.store.finish_job(job["_id"], "failed", error=error)
    metrics.JOBS.labels(job["type"], "failed").inc()
    log.warning("job failed", extra={**context, "errno": error["errno"]})
