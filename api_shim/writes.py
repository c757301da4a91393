"""Whether and how a webhook write becomes a job: a decision, not HTTP (it runs in a thread).

In order: a company that a fresh snapshot of its account does not hold is answered 404 at
once (no job, no CallRail request); the same write already queued or running is joined;
admission may refuse (429); then the job is submitted.
"""

from __future__ import annotations

from api_shim.deps import Services
from callrail_sync import errors
from callrail_sync.job import Job, JobParams, JobType
from callrail_sync.stores.database import utcnow
from tasks.submit import dedupe_key, submit

COMPANY_NOT_FOUND = "Company not found in this CallRail account."


def start_write(svc: Services, owner: str, job_type: JobType, params: JobParams) -> Job:
    stores = svc.runtime.stores
    account, company = params.need("callrail_account_id"), params.need("company_id")
    head = stores.snapshots.current(owner, "companies", account)
    if head is not None:
        age = (utcnow() - head.synced_at).total_seconds()
        fresh = age <= svc.runtime.settings.snapshot_max_age
        if fresh and not stores.snapshots.has_record("companies", head.snapshot_id, company):
            raise errors.NotFound(COMPANY_NOT_FOUND)
    joined = stores.jobs.active(dedupe_key(owner, job_type, params))
    if joined is not None:
        return joined
    svc.admission.admit(owner)
    svc.admission.admit_job(owner)
    job, _ = submit(stores.jobs, svc.queue, owner, job_type, params)
    return job
