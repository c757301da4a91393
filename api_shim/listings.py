"""Serve a listing from its snapshot, or start the job that makes one: a decision, not HTTP.

A listing answers 200 with the page when the caller has a snapshot; 202 with a job when there
is none yet or the caller asked for `refresh`; a snapshot older than SNAPSHOT_MAX_AGE is still
served (marked stale) while a background job refreshes it.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi.responses import JSONResponse

from api_shim.deps import Services
from api_shim.envelope import success
from api_shim.presenters import accepted, iso
from tasks.submit import dedupe_key, submit
from worker.job import Job, JobParams, JobType
from worker.stores.database import utcnow
from worker.stores.snapshots import Kind, PageQuery


def serve_listing(
    svc: Services,
    owner: str,
    kind: Kind,
    params: JobParams,
    query: PageQuery,
    *,
    refresh: bool,
) -> JSONResponse:
    """The page of the current snapshot, or 202 and the job that will make one."""
    stores, settings = svc.runtime.stores, svc.runtime.settings
    job_type = JobType.SYNC_ACCOUNTS if kind == "accounts" else JobType.SYNC_COMPANIES
    head = stores.snapshots.current(owner, kind, params.callrail_account_id)
    if head is None or refresh:
        job, _ = submit(stores.jobs, svc.queue, owner, job_type, params)
        return accepted(job)
    stale = (utcnow() - head.synced_at).total_seconds() > settings.snapshot_max_age
    refresh_job: Job | None
    if stale:
        refresh_job = submit(stores.jobs, svc.queue, owner, job_type, params)[0]
    else:
        refresh_job = stores.jobs.active(dedupe_key(owner, job_type, params) or "")
    items, total = stores.snapshots.read_page(kind, head.snapshot_id, query)
    if kind == "accounts":
        counts = stores.snapshots.company_counts(owner, [a["id"] for a in items])
        items = [{**a, "companies_count": counts.get(a["id"])} for a in items]
    data: dict[str, Any] = {
        kind: items,
        "page": query.page,
        "per_page": query.per_page,
        "total_pages": math.ceil(total / query.per_page),
        "total_records": total,
        "snapshot": {
            "synced_at": iso(head.synced_at),
            "stale": stale,
            "refresh_job_id": refresh_job.id if refresh_job else None,
        },
    }
    return success(data)
