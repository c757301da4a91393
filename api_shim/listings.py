"""Serve a listing from its snapshot, or start the job that makes one: a decision, not HTTP.

A listing answers 200 with the page when the caller has a snapshot; 202 with a job when there
is none yet or the caller asked for `refresh`; a snapshot older than SNAPSHOT_MAX_AGE is still
served (marked stale) while a background job refreshes it, unless the account's syncs are
paused: then it is served as it is, and a refresh (or a first sync) is a 409. A page of a
snapshot the shim has seen costs no store access (`api_shim/cache.py`).
"""

from __future__ import annotations

import math
from typing import Any

from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api_shim.answers import accepted
from api_shim.deps import Services
from callrail_sync.errors import SyncPaused
from callrail_sync.job import Job, JobParams, JobType, listing_sync
from callrail_sync.status import stale_after
from callrail_sync.stores.database import utcnow
from callrail_sync.stores.schedules import Schedule
from callrail_sync.stores.snapshots import Kind, PageQuery
from tasks.submit import dedupe_key


async def serve_listing(
    svc: Services,
    owner: str,
    kind: Kind,
    params: JobParams,
    query: PageQuery,
    *,
    refresh: bool,
) -> dict[str, Any] | JSONResponse:
    """The page of the current snapshot (the route's answer model reads it), or 202 and the
    job that will make one."""
    job_type = listing_sync(kind)
    head = None if refresh else await svc.cache.head(owner, kind, params.callrail_account_id)
    if head is None:
        schedule = await _schedule(svc, owner, params)
        if schedule is not None and schedule.paused:
            raise SyncPaused()
        return accepted(await _submit(svc, owner, job_type, params))
    age = (utcnow() - head.synced_at).total_seconds()
    stale = age > svc.runtime.settings.snapshot_max_age
    refresh_job_id: str | None = None
    if stale:  # the rare path: the account's own schedule may say otherwise
        schedule = await _schedule(svc, owner, params)
        stale = age > stale_after(svc.runtime.settings, schedule)
        if stale and not (schedule is not None and schedule.paused):
            refresh_job_id = (await _submit(svc, owner, job_type, params)).id
    if not stale:
        refresh_job_id = await svc.cache.active_job(dedupe_key(owner, job_type, params))
    items, total = await svc.cache.page(head, query)
    if kind == "accounts":
        counts = await svc.cache.company_counts(owner, [a["id"] for a in items])
        items = [{**a, "companies_count": counts.get(a["id"])} for a in items]
    data: dict[str, Any] = {
        kind: items,
        "page": query.page,
        "per_page": query.per_page,
        "total_pages": math.ceil(total / query.per_page),
        "total_records": total,
        "snapshot": {
            "synced_at": head.synced_at,
            "stale": stale,
            "refresh_job_id": refresh_job_id,
        },
    }
    return {"data": data}


async def _schedule(svc: Services, owner: str, params: JobParams) -> Schedule | None:
    """The schedule of the listing's CallRail account, if it has one of its own."""
    account = params.callrail_account_id
    if account is None:
        return None
    return await run_in_threadpool(svc.runtime.stores.schedules.get, owner, account)


async def _submit(svc: Services, owner: str, job_type: JobType, params: JobParams) -> Job:
    job, _ = await run_in_threadpool(svc.admission.submit, svc.queue, owner, job_type, params)
    return job
