"""Every job change of the caller, as one stream; and the tickets that open streams from a
browser (EventSource sends no headers, and the JWT never goes in a URL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from api_shim import validation as check
from api_shim.deps import RawBody, Session, StreamOwner, Svc
from api_shim.envelope import success
from api_shim.presenters import PREFIX, job_view
from api_shim.routes.jobs import SSE_HEADERS
from api_shim.tickets import STREAM_PATH, TICKET_SECONDS
from api_shim.watch import sse
from callrail_sync.errors import ValidationFailed

KEEPALIVE_SECONDS = 15.0
router = APIRouter(prefix=PREFIX)


@router.get("/events", summary="All of the caller's job changes, as Server-Sent Events")
async def all_events(caller: StreamOwner, svc: Svc) -> StreamingResponse:
    """One `job` event per change of any of the caller's jobs, as the store has it, and one
    `call` event per call event CallRail delivered to one of the caller's companies."""

    owner = caller.owner
    slot = await svc.streams.take(owner)

    async def stream() -> AsyncIterator[str]:
        yield ": connected\n\n"
        async with svc.hub.subscribe(owner) as events:
            while True:
                try:
                    event = await asyncio.wait_for(events.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if event.get("type") == "call":  # a call or form of one of the caller's companies
                    call = event.get("call") or {}
                    yield sse(str(event.get("kind") or "call"), call, str(call.get("id", "")))
                    continue
                if "job_id" not in event:
                    continue  # a resync: nothing to tell about one job
                job = await run_in_threadpool(
                    svc.runtime.stores.jobs.get, str(event.get("job_id")), owner
                )
                if job is not None:
                    yield sse("job", job_view(job), job.updated_at.isoformat())

    held = svc.streams.hold(owner, slot, stream(), caller.expires_at)
    return StreamingResponse(held, media_type="text/event-stream", headers=SSE_HEADERS)


MSG_STREAM = f"stream must be {PREFIX}/events or {PREFIX}/jobs/<job_id>/events."


@router.post("/events/ticket", summary="A short-lived ticket that opens one event stream")
async def mint_ticket(caller: Session, svc: Svc, raw: RawBody) -> JSONResponse:
    """Good once, for `GET /events` or `GET /jobs/{id}/events` (or only the stream named by
    `{"stream": "<path>"}`), for this caller only, for a minute at most and never past the
    token's expiry: `new EventSource('/v1/e/callrail/events?ticket=…')`."""
    stream = None
    if raw.strip():
        body = check.json_object(raw)
        stream = body.get("stream")
        if stream is not None and not (isinstance(stream, str) and STREAM_PATH.fullmatch(stream)):
            raise ValidationFailed(MSG_STREAM)
    owner, expires_at = caller
    ticket = await svc.tickets.mint(owner, expires_at, stream)
    return success({"ticket": ticket, "expires_in": TICKET_SECONDS})
