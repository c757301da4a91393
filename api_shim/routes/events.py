"""Every job change of the caller, as one stream; and the tickets that open streams from a
browser (EventSource sends no headers, and the JWT never goes in a URL)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, BeforeValidator, Field
from starlette.concurrency import run_in_threadpool

from api_shim.answers import PREFIX, StreamTicket, TicketAnswer
from api_shim.deps import Services, Session, StreamOwner, StreamSlot, Svc
from api_shim.openapi import TICKET_REFUSED, refused, stream_of
from api_shim.routes.jobs import TOKEN_EXPIRED, job_event
from api_shim.tickets import STREAM_PATH, TICKET_SECONDS
from api_shim.validation import json_body, openapi_body

QUIET_SECONDS = 15.0
"""How often a quiet stream still renews its slot (STREAMS_PER_OWNER)."""
router = APIRouter(prefix=PREFIX, tags=["events"])


@router.get(
    "/events",
    summary="All of the caller's job changes and call events, as Server-Sent Events",
    response_class=EventSourceResponse,
    responses={
        200: stream_of(
            "`job` (the job, as GET /jobs/{job_id} shows it) at each change of any of the "
            "caller's jobs, and `call` or `form` (as GET /calls shows it) for each call event "
            "CallRail delivers to one of the caller's companies, for as long as the connection "
            "stays open. The first line is the comment `: connected`.",
            {"job": "JobView", "call": "CallItem", "form": "CallItem"},
        ),
        **refused((401, 413, 429, 503), {401: (TICKET_REFUSED,)}),
    },
)
async def stream_events(
    caller: StreamOwner, slot: StreamSlot, svc: Svc
) -> AsyncIterator[ServerSentEvent]:
    events = events_of(svc, caller.owner)
    held = svc.streams.hold(caller.owner, slot, events, caller.expires_at, TOKEN_EXPIRED)
    async for event in held:
        if event is not None:  # None: a quiet spell (FastAPI sends the keep-alives)
            yield event


async def events_of(svc: Services, owner: str) -> AsyncIterator[ServerSentEvent | None]:
    """The caller's events as they come, None for each quiet spell of QUIET_SECONDS."""
    async with svc.hub.subscribe(owner) as events:
        yield ServerSentEvent(comment="connected")  # subscribed: no later change is missed
        while True:
            try:
                event = await asyncio.wait_for(events.get(), QUIET_SECONDS)
            except TimeoutError:
                yield None
                continue
            if event.get("type") == "call":  # a call or form of one of the caller's companies
                call: dict[str, Any] = event.get("call") or {}
                data = json.dumps(call, separators=(",", ":"))
                name = str(event.get("kind") or "call")
                call_id = str(call.get("id") or "") or None
                yield ServerSentEvent(event=name, raw_data=data, id=call_id)
                continue
            if "job_id" not in event:
                continue  # a resync: nothing to tell about one job
            job = await run_in_threadpool(
                svc.runtime.stores.jobs.get, str(event.get("job_id")), owner
            )
            if job is not None:
                yield job_event("job", job)


MSG_STREAM = f"stream must be {PREFIX}/events or {PREFIX}/jobs/<job_id>/events."


def _stream(raw: Any) -> str | None:
    if raw is not None and not (isinstance(raw, str) and STREAM_PATH.fullmatch(raw)):
        raise ValueError(MSG_STREAM)
    return raw


class TicketBody(BaseModel):
    """Body of POST /events/ticket (optional)."""

    stream: Annotated[
        str | None,
        Field(description="the one stream the ticket opens (default: either)"),
        BeforeValidator(_stream),
    ] = None


@router.post(
    "/events/ticket",
    summary="A short-lived ticket that opens one event stream",
    response_model=TicketAnswer,
    responses=refused((400, 401, 413, 503), {400: (MSG_STREAM,)}),
    openapi_extra=openapi_body(TicketBody),
)
async def create_stream_ticket(
    caller: Session,
    svc: Svc,
    body: Annotated[TicketBody, Depends(json_body(TicketBody, empty=True))],
) -> Any:
    """Good once, for `GET /events` or `GET /jobs/{id}/events` (or only the stream named by
    `{"stream": "<path>"}`), for this caller only, for a minute at most and never past the
    token's expiry: `new EventSource('/v1/e/callrail/events?ticket=…')`."""
    owner, expires_at = caller
    ticket = await svc.tickets.mint(owner, expires_at, body.stream)
    return TicketAnswer(data=StreamTicket(ticket=ticket, expires_in=TICKET_SECONDS))
