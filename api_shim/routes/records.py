"""GET /records/{stream} and /records/calls/summary: every stream's records, and the calls'
totals, from our own store (no CallRail request). See docs/streams.md."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api_shim.answers import PREFIX
from api_shim.answers_control import RecordsAnswer, SummaryAnswer
from api_shim.deps import Owner, Svc
from api_shim.envelope import failure, success
from api_shim.openapi import refused
from api_shim.validation import openapi_query
from callrail_sync import records
from callrail_sync.stores.database import utcnow
from callrail_sync.stores.snapshots import Kind

router = APIRouter(prefix=PREFIX, tags=["records"])


class RecordsQuery(BaseModel):
    """The query of GET /records/{stream} (read as text, so each bad value gets its own
    message)."""

    account_id: str | None = Field(None, description="the CallRail account (all but accounts)")
    company_id: str | None = Field(None, description="only this company's records")
    since: str | None = Field(None, description="ISO 8601 with an offset, inclusive")
    until: str | None = Field(None, description="ISO 8601 with an offset, exclusive")
    cursor: str | None = Field(None, description="`next_cursor` of the previous page")
    limit: str | None = Field(None, description=f"1 to {records.MAX_LIMIT}, default 100")
    sort: str | None = Field(None, description="`field` or `-field` (default: newest first)")
    search: str | None = Field(None, description="a case-insensitive substring")
    answer_status: str | None = Field(None, description="calls: answered, missed, voicemail")
    direction: str | None = Field(None, description="calls: inbound, outbound")
    source: str | None = Field(None, description="calls: the source, as CallRail names it")
    first_call: str | None = Field(None, description="calls: true or false")
    lead_status: str | None = Field(None, description="calls: good_lead, not_a_lead, not_scored")
    tag: str | None = Field(None, description="calls: a tag's name")


class SummaryQuery(BaseModel):
    """The query of GET /records/calls/summary."""

    account_id: str | None = Field(None, description="the CallRail account (required)")
    company_id: str | None = Field(None, description="only this company's calls")
    since: str | None = Field(None, description="ISO 8601 with an offset (default: 30 days ago)")
    until: str | None = Field(None, description="ISO 8601 with an offset, exclusive")
    group_by: str | None = Field(None, description=", ".join(records.GROUPS))


@router.get(
    "/records/calls/summary",
    summary="Totals of the calls, grouped, from our own roll-ups (no CallRail request)",
    openapi_extra=openapi_query(SummaryQuery),
    response_model=SummaryAnswer,
    responses=refused(
        (400, 401, 413, 503),
        {
            400: (
                "account_id is required.",
                "group_by must be one of: " + ", ".join(records.GROUPS),
            )
        },
    ),
)
async def summarize_calls(request: Request, owner: Owner, svc: Svc) -> Response:
    asked = records.summary_request(owner, dict(request.query_params), utcnow())
    version = await svc.cache.feed_version(asked.feed)
    key = ("summary", version, asked)
    body = await svc.cache.records.through(
        key, lambda: rendered(records.summarize_calls(svc.runtime.stores, asked))
    )
    return Response(body, media_type="application/json")


@router.get(
    "/records/{stream}",
    summary="One page of a stream's records, from our own store (cursor-paged)",
    openapi_extra=openapi_query(RecordsQuery),
    response_model=RecordsAnswer,
    responses=refused(
        (400, 401, 404, 413, 503),
        {
            400: (records.MSG_ACCOUNT, records.BAD_CURSOR),
            404: (records.unknown_stream("calendars"),),
        },
        why={404: "No such stream."},
    ),
)
async def list_records(stream: str, request: Request, owner: Owner, svc: Svc) -> Response:
    try:
        asked = records.records_request(owner, stream, dict(request.query_params))
    except LookupError as exc:
        return failure(404, str(exc.args[0]))
    stores = svc.runtime.stores
    if asked.stream.store == "records":
        version: object = await svc.cache.feed_version(asked.query.feed)
    else:
        kind: Kind = "accounts" if asked.stream.name == "accounts" else "companies"
        head = await svc.cache.head(owner, kind, asked.account)
        version = head.snapshot_id if head else None
    key = (version, *asked.cache_key)
    body = await svc.cache.records.through(
        key, lambda: rendered(records.read_records(stores, asked))
    )
    return Response(body, media_type="application/json")


def rendered(data: dict[str, Any]) -> bytes:
    """The envelope's bytes (`envelope.success`), made once and cached: a page of 100 calls is
    some 200 KB of JSON, whose encoding would cost more than the rest of a cached answer."""
    return bytes(success(data).body)
