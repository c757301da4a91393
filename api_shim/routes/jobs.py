"""A job's status: polled (`?wait=N` answers as soon as it ends) or streamed as events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, StreamingResponse

from api_shim import validation as check
from api_shim.deps import Owner, StreamOwner, Svc
from api_shim.envelope import success
from api_shim.presenters import PREFIX, job_view
from api_shim.watch import read_job, sse, watch
from callrail_sync.job import Job

MAX_WAIT = 30
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
router = APIRouter(prefix=PREFIX)


@router.get("/jobs/{job_id}", summary="A job's status, progress and result")
async def get_job(
    job_id: str,
    owner: Owner,
    svc: Svc,
    wait: str | None = Query(None, description=f"seconds (≤ {MAX_WAIT}) to wait for the end"),
) -> JSONResponse:
    seconds = check.page_number(wait, "wait", 0, MAX_WAIT) if wait not in (None, "", "0") else 0
    if not seconds:
        return success(job_view(await read_job(svc, owner, job_id)))
    last: Job | None = None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            async with contextlib.aclosing(watch(svc, owner, job_id)) as changes:
                async for job in changes:
                    last = job or last
    return success(job_view(last or await read_job(svc, owner, job_id)))


@router.get("/jobs/{job_id}/events", summary="A job's progress as Server-Sent Events")
async def job_events(job_id: str, caller: StreamOwner, svc: Svc) -> StreamingResponse:
    """`progress` at each change, then one `status` when it ends, then the stream closes.
    Every connection starts with the job as it is now, so a reconnect resumes."""
    owner = caller.owner
    await read_job(svc, owner, job_id)  # 404 before the stream starts
    slot = await svc.streams.take(owner)

    async def stream() -> AsyncIterator[str]:
        async with contextlib.aclosing(watch(svc, owner, job_id)) as changes:
            async for job in changes:
                if job is None:  # a quiet spell: a comment line, so proxies keep the stream
                    yield ": keep-alive\n\n"
                    continue
                name = "status" if job.is_final else "progress"
                yield sse(name, job_view(job), job.updated_at.isoformat())

    held = svc.streams.hold(owner, slot, stream(), caller.expires_at)
    return StreamingResponse(held, media_type="text/event-stream", headers=SSE_HEADERS)
