"""GET /jobs/{id}: a job's status, progress, result or error, optionally waiting for its end."""

from __future__ import annotations

import time

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from api_shim import validation as check
from api_shim.deps import Owner, Svc
from api_shim.envelope import success
from api_shim.presenters import PREFIX, job_view
from worker.errors import NotFound

MAX_WAIT = 30
router = APIRouter(prefix=PREFIX)


@router.get("/jobs/{job_id}", summary="A job's status, progress and result")
def get_job(
    job_id: str,
    owner: Owner,
    svc: Svc,
    wait: str | None = Query(None, description=f"seconds (≤ {MAX_WAIT}) to wait for the end"),
) -> JSONResponse:
    seconds = check.page_number(wait, "wait", 0, MAX_WAIT) if wait not in (None, "", "0") else 0
    deadline = time.monotonic() + seconds
    while True:
        job = svc.runtime.stores.jobs.get(job_id, owner=owner)
        if job is None:
            raise NotFound("Job not found.")
        if job.is_final or time.monotonic() >= deadline:
            return success(job_view(job))
        time.sleep(0.2)
