"""A job's status: polled (`?wait=N` answers as soon as it ends) or streamed as events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BeforeValidator, Field

from api_shim.answers import PREFIX, JobAnswer, JobView
from api_shim.deps import Owner, StreamOwner, StreamSlot, Svc
from api_shim.openapi import TICKET_REFUSED, refused, stream_of
from api_shim.validation import whole
from api_shim.watch import OwnedJob, read_job, watch
from callrail_sync.job import Job

MAX_WAIT = 30
Wait = Annotated[
    int,
    Field(ge=0, le=MAX_WAIT, description=f"seconds (≤ {MAX_WAIT}) to wait for the end"),
    BeforeValidator(lambda raw: 0 if raw == "0" else whole("wait", 0, MAX_WAIT)(raw)),
]
router = APIRouter(prefix=PREFIX, tags=["jobs"])


@router.get(
    "/jobs/{job_id}",
    summary="A job's status, progress and result",
    response_model=JobAnswer,
    responses=refused(
        (400, 401, 404, 413, 503), {400: (f"wait must be between 1 and {MAX_WAIT}.",)}
    ),
)
async def get_job(job_id: str, owner: Owner, svc: Svc, wait: Annotated[Wait, Query()] = 0) -> Any:
    if not wait:
        return JobAnswer(data=JobView.of(await read_job(svc, owner, job_id)))
    last: Job | None = None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(wait):
            async with contextlib.aclosing(watch(svc, owner, job_id)) as changes:
                async for job in changes:
                    last = job or last
    return JobAnswer(data=JobView.of(last or await read_job(svc, owner, job_id)))


@router.get(
    "/jobs/{job_id}/events",
    summary="A job's progress as Server-Sent Events",
    response_class=EventSourceResponse,
    responses={
        200: stream_of(
            "`progress` (the job, as GET /jobs/{job_id} shows it) at each change, then one "
            "`status` when it ends; then the stream closes. A reconnect starts from the job as "
            "it is. Comment lines keep a quiet stream open.",
            {"progress": "JobView", "status": "JobView"},
        ),
        **refused((401, 404, 413, 429, 503), {401: (TICKET_REFUSED,)}),
    },
)
async def stream_job_events(
    job: OwnedJob, caller: StreamOwner, slot: StreamSlot, svc: Svc
) -> AsyncIterator[ServerSentEvent]:
    """`progress` at each change, then one `status` when it ends, then the stream closes.
    Every connection starts with the job as it is now, so a reconnect resumes."""
    async with contextlib.aclosing(watch(svc, caller.owner, job.id)) as changes:
        events = (
            job_event("status" if seen.is_final else "progress", seen) if seen else None
            async for seen in changes
        )
        held = svc.streams.hold(caller.owner, slot, events, caller.expires_at, TOKEN_EXPIRED)
        async for event in held:
            if event is not None:  # None: a quiet spell (FastAPI sends the keep-alives)
                yield event


TOKEN_EXPIRED = ServerSentEvent(comment="the token expired")


def job_event(name: str, job: Job) -> ServerSentEvent:
    """A job as an event: its view as compact JSON, its last change as the event id."""
    view = JobView.of(job).model_dump_json()
    return ServerSentEvent(event=name, raw_data=view, id=job.updated_at.isoformat())
