"""The beat dispatcher: keeps every configured account fresh without anyone clicking.

Beat runs `configured_accounts` every quarter of the sync interval. It queues a sync only where
the snapshot is older than the interval (or missing), shares the dedupe of manual jobs, and
spreads the syncs of one owner over the quarter-interval so a key's budget is not spent in a
burst. Run exactly one beat: two would not double the syncs (dedupe), but would double this.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from typing import Any

from tasks.submit import JobType, resend, submit
from worker.celery_app import app
from worker.runtime import runtime
from worker.store import Kind, utcnow

log = logging.getLogger("callrail_sync.schedule")


def _spread(name: str, window: float) -> float:
    """A stable offset in [0, window) for `name`, so syncs do not all start at once."""
    digest = hashlib.sha256(name.encode()).digest()
    return (int.from_bytes(digest[:4], "big") / 2**32) * window


def plan_syncs() -> list[dict[str, Any]]:
    """Queue the syncs that are due; returns what was queued (for logs and tests)."""
    rt = runtime()
    interval = rt.settings.sync_interval
    stale_before = utcnow() - timedelta(seconds=interval)
    window = interval / 4
    queued: list[dict[str, Any]] = []
    for owner, account_ids in rt.store.configured_accounts():
        if rt.store.usable_api_key(owner) is None:
            continue
        wanted: list[tuple[Kind, str | None]] = [("accounts", None)]
        wanted += [("companies", a) for a in account_ids]
        for kind, account_id in wanted:
            head = rt.store.current_snapshot(owner, kind, account_id)
            if head is not None and head["synced_at"] > stale_before:
                continue
            job_type: JobType = "sync_accounts" if kind == "accounts" else "sync_companies"
            params = {"callrail_account_id": account_id} if account_id else {}
            delay = _spread(f"{owner}:{kind}:{account_id}", window)
            job, created = submit(rt.store, owner, job_type, params, countdown=delay)
            if created:
                queued.append(
                    {
                        "job_id": job["_id"],
                        "owner": owner,
                        "kind": kind,
                        "callrail_account_id": account_id,
                        "countdown": round(delay, 1),
                    }
                )
    log.info("periodic syncs planned", extra={"queued": len(queued)})
    return queued


def sweep_stale_jobs() -> list[dict[str, Any]]:
    """Revive or fail jobs that stopped moving: a worker vanished (killed, machine gone) or a
    message was lost. Running syncs touch their job at every page, so a job untouched for
    STALE_JOB_SECONDS is not being worked on."""
    rt = runtime()
    cutoff = utcnow() - timedelta(seconds=rt.settings.stale_job_seconds)
    acted: list[dict[str, Any]] = []
    for job in rt.store.stale_jobs(cutoff):
        if job["status"] == "running" and job.get("attempts", 0) >= rt.settings.max_attempts:
            message = "The worker running this job stopped, and it was tried too many times."
            rt.store.discard_snapshot(job["_id"])
            rt.store.finish_job(job["_id"], "failed", error={"errno": 500, "message": message})
            acted.append({"job_id": job["_id"], "action": "failed"})
            continue
        revived = rt.store.reclaim_stale(job["_id"], job["updated_at"])
        if revived is None:
            continue  # it moved after all
        resend(rt.store, revived, f"{job['_id']}.sweep{revived.get('sweeps', 1)}")
        acted.append({"job_id": job["_id"], "action": "requeued", "was": job["status"]})
    if acted:
        log.warning("stale jobs swept", extra={"count": len(acted)})
    return acted


@app.task(name="callrail.jobs.sweep")
def sweep() -> dict[str, Any]:
    """Requeue or fail jobs whose worker vanished or whose message was lost."""
    return {"swept": sweep_stale_jobs()}


@app.task(name="callrail.sync.configured_accounts")
def configured_accounts() -> dict[str, Any]:
    """Queue syncs for every configured account whose snapshot is due."""
    return {"queued": plan_syncs()}
