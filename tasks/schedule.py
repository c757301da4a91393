"""Beat's periodic work: keep every configured account fresh, and revive stuck jobs.

Beat runs `plan_syncs` every quarter of the sync interval (at least every minute). It queues a
sync only where the snapshot is older than the interval (or missing), shares the dedupe of
manual jobs, and spreads the syncs of one owner over the quarter-interval so a key's budget is
not spent in a burst. A CallRail account's own schedule (`PUT /schedule`) pauses its syncs or
gives it its own interval.
Run exactly one beat: two would not double the syncs (dedupe), but would double this work.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import timedelta
from typing import Any

from callrail_sync import errors, metrics
from callrail_sync.job import Job, JobError, JobStatus, Lane, sync_job
from callrail_sync.runtime import Runtime
from callrail_sync.stores.database import utcnow
from callrail_sync.stores.schedules import Schedule
from callrail_sync.stores.snapshots import Kind
from callrail_sync.stores.streams import feed_id
from tasks.notify import Send, announce
from tasks.submit import JobQueue, resend, submit

log = logging.getLogger("callrail_sync.schedule")


def _spread(name: str, window: float) -> float:
    """A stable offset in [0, window) for `name`, so syncs do not all start at once."""
    digest = hashlib.sha256(name.encode()).digest()
    return (int.from_bytes(digest[:4], "big") / 2**32) * window


def plan_syncs(rt: Runtime, queue: JobQueue) -> list[dict[str, Any]]:
    """Queue the syncs that are due; returns what was queued (for logs and tests)."""
    heartbeat = metrics.beat_planned_key(rt.settings.redis_prefix)
    rt.redis.set(heartbeat, repr(time.time()))  # beat's
    queued: list[dict[str, Any]] = []
    for owner, account_ids in rt.stores.userconfig.configured():
        if rt.stores.keys.usable_key(owner) is None:
            continue
        schedules = rt.stores.schedules.of_owner(owner)
        wanted: list[tuple[Kind, str | None]] = [("accounts", None)]
        wanted += [("companies", a) for a in account_ids]
        for kind, callrail_account_id in wanted:
            schedule = schedules.get(callrail_account_id) if callrail_account_id else None
            if schedule is not None and schedule.paused:
                continue
            interval = interval_of(rt, schedule)
            head = rt.stores.snapshots.current(owner, kind, callrail_account_id)
            if head is not None and head.synced_at > utcnow() - timedelta(seconds=interval):
                continue
            queued += _queue_periodic(rt, queue, owner, kind, callrail_account_id, interval)
        queued += plan_streams(rt, queue, owner, account_ids, schedules)
    log.info("periodic syncs planned", extra={"queued": len(queued)})
    return queued


def plan_streams(
    rt: Runtime,
    queue: JobQueue,
    owner: str,
    account_ids: list[str],
    schedules: dict[str, Schedule],
) -> list[dict[str, Any]]:
    """Queue the stream syncs (SYNC_STREAMS) of the owner's configured accounts that are due:
    never run (its backfill starts), or last run longer ago than the interval (a rescan, or a
    walk). A backfill still under way holds its job's dedupe slot, so it is never doubled."""
    queued: list[dict[str, Any]] = []
    now = utcnow()
    for account_id in account_ids:
        schedule = schedules.get(account_id)
        if schedule is not None and schedule.paused:
            continue
        interval = interval_of(rt, schedule)
        for stream in rt.settings.streams_synced():
            state = rt.stores.streams.state(feed_id(owner, stream, account_id))
            last = state.last_run.get("at") if state.last_run else None
            if last is not None and last > now - timedelta(seconds=interval):
                continue
            queued += _queue_periodic(rt, queue, owner, stream, account_id, interval)
    return queued


def _queue_periodic(
    rt: Runtime, queue: JobQueue, owner: str, kind: str, account: str | None, interval: float
) -> list[dict[str, Any]]:
    """Submit the periodic sync of a listing (accounts, companies) or of a stream, its start
    spread over a quarter of `interval`; what was queued (nothing where it joined an active
    job)."""
    job_type, params = sync_job(kind, account)
    delay = _spread(f"{owner}:{kind}:{account}", interval / 4)
    job, created = submit(
        rt.stores.jobs, queue, owner, job_type, params, countdown=delay, lane=Lane.PERIODIC
    )
    if not created:
        return []
    return [
        {
            "job_id": job.id,
            "owner": owner,
            "kind": kind,
            "callrail_account_id": account,
            "countdown": round(delay, 1),
        }
    ]


def interval_of(rt: Runtime, schedule: Schedule | None) -> float:
    """Seconds between two periodic syncs under this schedule."""
    if schedule is not None and schedule.interval_seconds:
        return float(schedule.interval_seconds)
    return rt.settings.sync_interval


def give_up(rt: Runtime, job: Job, send: Send | None) -> dict[str, Any] | None:
    """Fail a job whose worker was lost once too often (its partial snapshot discarded), and
    announce it: the end of the sweeper's and the reviver's patience alike. Only the attempt
    seen lost is failed: if another message claimed the job meanwhile, it is that one's (its
    status and its snapshot are left alone). The failure is written before the snapshot is
    discarded, so a job is never left resumable over records that are gone."""
    failed = rt.stores.jobs.fail(job.id, JobError.of(errors.WorkerLost()), job.claimed_by)
    if failed is None:
        return None
    rt.stores.snapshots.discard(job.id)
    if send is not None:
        announce(rt, failed, send)
    return {"job_id": job.id, "action": "failed"}


def sweep_stale_jobs(
    rt: Runtime, queue: JobQueue, send: Send | None = None
) -> list[dict[str, Any]]:
    """Revive or fail jobs that stopped moving: a worker vanished (killed, machine gone) or a
    message was lost. Running syncs touch their job at every page, so a job untouched for
    STALE_JOB_SECONDS is not being worked on."""
    cutoff = utcnow() - timedelta(seconds=rt.settings.stale_job_seconds)
    jobs = rt.stores.jobs
    acted: list[dict[str, Any]] = []
    for job in jobs.stale(cutoff):
        if job.status is JobStatus.RUNNING and job.attempts >= rt.settings.max_attempts:
            gave_up = give_up(rt, job, send)
            acted.extend([gave_up] if gave_up else [])
            continue
        revived = jobs.reclaim_stale(job.id, job.updated_at)
        if revived is None:
            continue  # it moved after all
        resend(jobs, queue, revived, f"{job.id}.sweep{revived.sweeps}")
        acted.append({"job_id": job.id, "action": "requeued", "was": job.status.value})
    if acted:
        log.warning("stale jobs swept", extra={"count": len(acted)})
    return acted


def revive_orphans(rt: Runtime, queue: JobQueue, send: Send | None = None) -> list[dict[str, Any]]:
    """Take up again the running jobs whose process fell silent for JOB_LEASE_SECONDS (a
    worker killed with its pool, a machine gone): the broker would give their message back
    only after its visibility timeout (hours). A live process beats whatever it waits on, so
    a slow job is never taken from it. Runs every third of JOB_LEASE_SECONDS (beat)."""
    cutoff = utcnow() - timedelta(seconds=rt.settings.job_lease_seconds)
    jobs = rt.stores.jobs
    acted: list[dict[str, Any]] = []
    for job in jobs.orphans(cutoff):
        if job.attempts >= rt.settings.max_attempts:
            gave_up = give_up(rt, job, send)
            acted.extend([gave_up] if gave_up else [])
            continue
        revived = jobs.reclaim_orphan(job.id, job.alive_at)
        if revived is None:
            continue  # it beat after all
        resend(jobs, queue, revived, f"{job.id}.revive{revived.sweeps}")
        acted.append({"job_id": job.id, "action": "requeued"})
    if acted:
        log.warning("jobs of lost workers taken up again", extra={"count": len(acted)})
    return acted
