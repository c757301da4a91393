"""The lifecycle every job goes through, and the retry policy, in one place.

queued → running → succeeded | failed, with `retrying` (and `next_retry_at`) while a
retriable error waits out its backoff. Which errors are retriable is declared on the error
types (`callrail_sync.errors`), never guessed here.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import redis
from celery import Task
from celery.exceptions import Retry, SoftTimeLimitExceeded

from callrail_sync import errors, metrics
from callrail_sync.budget import unit_for
from callrail_sync.callrail.client import CallRailClient
from callrail_sync.job import Job, JobError
from callrail_sync.runtime import Runtime, runtime
from callrail_sync.stopping import stopping
from callrail_sync.stores.database import UNAVAILABLE as STORE_UNAVAILABLE
from callrail_sync.stores.database import utcnow
from callrail_sync.stores.keys import ApiKeyRecord
from tasks.names import VISIBILITY_TIMEOUT
from tasks.notify import announce, sender

log = logging.getLogger("callrail_sync.jobs")

# A countdown longer than the visibility timeout would be redelivered before it is due.
MAX_COUNTDOWN = VISIBILITY_TIMEOUT / 2
REDIS_UNAVAILABLE: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)
Summary = dict[str, str]
"""What a task returns (for Flower and operators): the job id and where it ended."""


@dataclass
class Outcome:
    """What a job's work produced: its result, and the snapshot it published (if any)."""

    result: dict[str, Any] = field(default_factory=dict)
    snapshot_id: str | None = None


Work = Callable[[Job, Runtime, CallRailClient], Outcome]
"""A job's work: given the job, the runtime and a client for the owner's key."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, capped; a server's Retry-After wins when it sent one."""

    max_attempts: int = 6
    base: float = 2.0
    cap: float = 300.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt `attempt + 1`, spread at random so that workers hit
        by the same failure do not retry in step."""
        if retry_after is not None:
            return min(MAX_COUNTDOWN, retry_after + random.uniform(0, 1.0))
        ceiling = min(self.cap, self.base * 2.0 ** max(0, attempt - 1))
        return min(MAX_COUNTDOWN, ceiling / 2 + random.uniform(0, ceiling / 2))

    def can_retry(self, attempt: int, exc: errors.CallRailSyncError) -> bool:
        return exc.retriable and attempt < self.max_attempts


def policy_for(rt: Runtime) -> RetryPolicy:
    s = rt.settings
    return RetryPolicy(max_attempts=s.max_attempts, base=s.backoff_base, cap=s.backoff_cap)


def require_api_key(rt: Runtime, owner: str) -> ApiKeyRecord:
    """The owner's usable key, or the error that explains why there is none."""
    record = rt.stores.keys.record(owner)
    if record is None:
        raise errors.ApiKeyNotFound()
    if record.rejected_at is not None:
        raise errors.ApiKeyRejected(record.rejected_at)
    return record


def summary(job_id: str, status: str) -> Summary:
    return {"job_id": job_id, "status": status}


def run_job(task: Task, job_id: str, work: Work) -> Summary:
    """Run `work` for a job, keeping the job document true whatever happens."""
    rt = runtime()
    if stopping():
        # A stopping worker starts nothing: the message goes back for the next worker.
        raise task.retry(countdown=1, exc=None)
    lease = rt.settings.job_lease_seconds
    job = rt.stores.jobs.start(job_id, task.request.id or job_id, lease_seconds=lease)
    if job is None:
        existing = rt.stores.jobs.get(job_id)
        status = existing.status.value if existing else "missing"
        if status == "running":
            # Another message runs it now; come back when its lease would have run out, in
            # case that worker dies. A finished job makes the return visit a no-op.
            raise task.retry(countdown=lease, exc=None)
        log.info("job not runnable", extra={"job_id": job_id, "status": status})
        return summary(job_id, status)
    context: dict[str, Any] = {
        "job_id": job_id,
        "job_type": job.type.value,
        "owner": job.owner,
        "attempt": job.attempts,
    }
    log.info("job started", extra=context)
    with heartbeat(rt, job_id, job.claimed_by or ""):
        return _run(task, rt, job, work, context)


class ClaimLost(Exception):
    """This attempt no longer holds its job: it fell silent past its lease (a stall, the store
    out of reach) and another attempt took the job over. It stops and leaves the job alone."""


@dataclass
class Claim:
    """A running attempt's hold on its job: its claim (`JobStore.start`), and whether a
    heartbeat found the job taken from it."""

    job_id: str
    token: str
    lost: threading.Event = field(default_factory=threading.Event)


_attempt = threading.local()
"""The claim of the attempt that this thread runs (set by `heartbeat`)."""


def claim_point(rt: Runtime, job_id: str, *, confirm: bool = False) -> None:
    """Raise ClaimLost if this thread's attempt lost its job; with `confirm`, ask the store
    now (one heartbeat) rather than trust the last beat: before publishing, an attempt that
    was taken over must not publish beside the one that took it. A thread that runs no claim
    (work called directly) passes."""
    claim = _claim_of(job_id)
    if claim is None:
        return
    if confirm and not claim.lost.is_set() and not rt.stores.jobs.beat(job_id, claim.token):
        claim.lost.set()
    if claim.lost.is_set():
        raise ClaimLost(job_id)


def _claim_of(job_id: str) -> Claim | None:
    """The claim this thread's attempt holds on `job_id`, if it runs one."""
    claim: Claim | None = getattr(_attempt, "claim", None)
    return claim if claim is not None and claim.job_id == job_id else None


@contextmanager
def heartbeat(rt: Runtime, job_id: str, token: str) -> Iterator[Claim]:
    """Say the job's process is alive every third of JOB_LEASE_SECONDS while the job runs, from
    a thread of its own: a page that waits on the quota or on CallRail still beats, and only a
    process that is gone (killed, its machine lost) falls silent (`revive_orphans`). A beat
    that finds the job taken over marks the claim lost: the attempt stops at its next
    `claim_point` (a stalled process resumes, but never as a second runner of the job)."""
    stop = threading.Event()
    every = rt.settings.job_lease_seconds / 3
    claim = Claim(job_id, token)

    def beat() -> None:
        while not stop.wait(every):
            try:
                if not rt.stores.jobs.beat(job_id, token):
                    # No longer ours to run (finished, handed back, taken over).
                    claim.lost.set()
                    return
            except Exception as exc:  # the store blinked: the next beat tries again
                log.warning("heartbeat not recorded", extra={"job_id": job_id, "error": str(exc)})

    thread = threading.Thread(target=beat, name=f"heartbeat-{job_id}", daemon=True)
    thread.start()
    outer = getattr(_attempt, "claim", None)
    _attempt.claim = claim
    try:
        yield claim
    finally:
        stop.set()
        _attempt.claim = outer


def _run(task: Task, rt: Runtime, job: Job, work: Work, context: dict[str, Any]) -> Summary:
    job_id = job.id
    key: ApiKeyRecord | None = None
    try:
        key = require_api_key(rt, job.owner)
        outcome = work(job, rt, rt.client(key.api_key.get_secret_value()))
    except errors.RateLimited as exc:
        return _wait_for_budget(task, rt, job, exc, key, context)
    except errors.StopRequested:
        return _hand_back(task, rt, job, context)
    except ClaimLost:
        return _stand_down(job_id, context)
    except errors.CallRailSyncError as exc:
        if isinstance(exc, errors.Unauthorized) and key is not None:
            # The spec's token invalidation: no later job spends a request on this key.
            rt.stores.keys.mark_invalid(key)
        return _on_error(task, rt, job, exc, context)
    except STORE_UNAVAILABLE + REDIS_UNAVAILABLE as exc:
        # Our own services blinked (a failover, a restart): retried like a CallRail 5xx.
        which = "MongoDB" if isinstance(exc, STORE_UNAVAILABLE) else "Redis"
        down = errors.ServiceUnavailable(f"{which} is unavailable; the job will retry.")
        return _on_error(task, rt, job, down, {**context, "cause": type(exc).__name__})
    except SoftTimeLimitExceeded:
        return _fail(task, rt, job, errors.JobTimedOut(), context)
    except Exception:
        log.exception("job crashed", extra=context)
        _fail(task, rt, job, errors.Crashed(), context)
        raise
    done = rt.stores.jobs.succeed(job_id, outcome.result, outcome.snapshot_id, job.claimed_by)
    if done is None:
        return _stand_down(job_id, context)
    metrics.JOBS.labels(job.type.value, "succeeded").inc()
    log.info("job succeeded", extra=context)
    announce(rt, done, sender(task))
    return summary(job_id, "succeeded")


def _claim_lost(job_id: str) -> bool:
    """Whether a heartbeat of this thread's attempt found its job taken over."""
    claim = _claim_of(job_id)
    return claim is not None and claim.lost.is_set()


def _stand_down(job_id: str, context: dict[str, Any]) -> Summary:
    """Another attempt runs the job now: its status, pages and snapshot are that one's, so this
    one ends without writing any of them (a retry, a failure, a hand-back would undo its).
    Found by a heartbeat, or by a status write of this attempt that matched nothing: each
    names the attempt's claim, and the job names another's."""
    log.warning("job taken over by another attempt; this one stops", extra=context)
    return summary(job_id, "taken over")


def _on_error(
    task: Task, rt: Runtime, job: Job, exc: errors.CallRailSyncError, context: dict[str, Any]
) -> Summary:
    if _claim_lost(job.id):
        return _stand_down(job.id, context)
    policy = policy_for(rt)
    if policy.can_retry(job.attempts, exc):
        delay = policy.delay(job.attempts)
        retry_at = utcnow() + timedelta(seconds=delay)
        error = JobError.of(exc, retry_at=retry_at)
        try:
            if rt.stores.jobs.retry_later(job.id, error, retry_at, job.claimed_by) is None:
                return _stand_down(job.id, context)
        except STORE_UNAVAILABLE:
            # Still `running` in the store: the retry takes it over once its lease is out.
            log.warning("could not record the retry", extra=context)
        log.warning(
            "job will retry",
            extra={**context, "error": type(exc).__name__, "countdown": round(delay, 2)},
        )
        return _requeue(task, job, delay, exc, context)
    return _fail(task, rt, job, exc, {**context, "error": type(exc).__name__})


def _wait_for_budget(
    task: Task,
    rt: Runtime,
    job: Job,
    exc: errors.RateLimited,
    key: ApiKeyRecord | None,
    context: dict[str, Any],
) -> Summary:
    """A 429, or no budget left: wait it out with a countdown. This costs no attempt.

    A real 429 first puts the key into the cooldown that every worker honours. Waits longer
    than MAX_COUNTDOWN are split: the task comes back early, finds the budget still closed,
    and goes back to waiting, so no countdown outlives the broker's visibility timeout.
    """
    if _claim_lost(job.id):
        return _stand_down(job.id, context)
    wait = exc.retry_after
    cooldown = not isinstance(exc, errors.BudgetWait)
    if cooldown and key is not None:
        unit = unit_for(key.api_key.get_secret_value(), exc.path)
        wait = rt.budget.cool_down(unit, exc.retry_after)
    if job.rate_limit_waits + 1 > rt.settings.max_rate_limit_waits:
        return _fail(task, rt, job, errors.RateLimitExhausted(), context)
    delay = policy_for(rt).delay(job.attempts, retry_after=wait or 0.0)
    retry_at = utcnow() + timedelta(seconds=delay)
    error = JobError.of(exc, retry_at=retry_at)
    if rt.stores.jobs.park_for_rate_limit(job.id, error, retry_at, job.claimed_by) is None:
        return _stand_down(job.id, context)
    log.info(
        "job waits for the rate limit",
        extra={**context, "countdown": round(delay, 2), "cooldown": cooldown},
    )
    return _requeue(task, job, delay, exc, context)


def _hand_back(task: Task, rt: Runtime, job: Job, context: dict[str, Any]) -> Summary:
    """The worker is stopping: requeue the job now; the next run resumes from stored pages.
    If the broker does not take it, the job stays queued and the sweeper sends it again."""
    if _claim_lost(job.id) or rt.stores.jobs.requeue(job.id, job.claimed_by) is None:
        return _stand_down(job.id, context)
    log.warning("job handed back to the queue (worker stopping)", extra=context)
    return _requeue(task, job, 0, None, context, left="queued")


def _requeue(
    task: Task,
    job: Job,
    countdown: float,
    exc: Exception | None,
    context: dict[str, Any],
    *,
    left: str = "retrying",
) -> Summary:
    """Requeue the task with a countdown. If the broker does not take it, the job stays as it
    was `left` in the store (`retrying`, or `queued` by a hand-back) and the sweeper sends it
    again once the broker is back."""
    try:
        # The tasks are declared with max_retries=None: our own counters decide when to stop.
        raise task.retry(countdown=countdown, exc=exc)
    except Retry:
        raise
    except Exception as failure:
        log.error("could not requeue job", extra={**context, "error": type(failure).__name__})
        return summary(job.id, left)


def _fail(
    task: Task, rt: Runtime, job: Job, exc: errors.CallRailSyncError, context: dict[str, Any]
) -> Summary:
    """Record the failure, then discard the snapshot the job was building. If the failure
    cannot be written (MongoDB is down), the task comes back once the job's lease is out and
    tries again: a job never stays `running` because its own failure could not be recorded,
    and its pages and their records stay together (a retry that resumes finds both). The
    snapshot is discarded only once the failure is written, and only if this attempt still
    held the job: otherwise it is the snapshot of the attempt that took it over."""
    if _claim_lost(job.id):
        return _stand_down(job.id, context)  # the failure is this attempt's, not the job's
    error = JobError.of(exc)
    try:
        failed = rt.stores.jobs.fail(job.id, error, job.claimed_by)
    except STORE_UNAVAILABLE:
        log.error("could not record the failure; retrying", extra=context)
        raise task.retry(countdown=rt.settings.job_lease_seconds, exc=None) from None
    if failed is None:
        return _stand_down(job.id, context)
    try:
        rt.stores.snapshots.discard(job.id)
    except STORE_UNAVAILABLE:
        # The job failed: nothing reads or resumes this snapshot, its records are only waste.
        log.error("could not discard the failed job's snapshot", extra=context)
    metrics.JOBS.labels(job.type.value, "failed").inc()
    log.warning("job failed", extra={**context, "errno": error.errno})
    announce(rt, failed, sender(task))
    return summary(job.id, "failed")
