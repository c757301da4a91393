"""What the frontend sees of a job: never the owner's key, never internal fields."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi.responses import JSONResponse

from api_shim.envelope import success
from callrail_sync.job import Job, JobStatus

PREFIX = "/v1/e/callrail"


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def job_view(job: Job) -> dict[str, Any]:
    """The job as `GET /jobs/{id}` shows it."""
    waiting = job.status in (JobStatus.FAILED, JobStatus.RETRYING)
    return {
        "job_id": job.id,
        "type": job.type.value,
        "status": job.status.value,
        "params": job.params.model_dump(exclude_none=True),
        "progress": {
            "pages_done": len(job.progress.pages_done),
            "total_pages": job.progress.total_pages,
            "records": job.progress.records,
        },
        "result": job.result,
        "error": job.error.model_dump(mode="json") if job.error and waiting else None,
        "attempts": job.attempts,
        "next_retry_at": iso(job.next_retry_at),
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "updated_at": iso(job.updated_at),
    }


def accepted(job: Job) -> JSONResponse:
    """202: the job that will produce the answer, and where to poll it."""
    return success(
        {"job_id": job.id, "status": job.status.value, "status_url": f"{PREFIX}/jobs/{job.id}"},
        status=202,
        message="ACCEPTED",
    )
