"""GET /records/{stream} and /records/calls/summary: every stream's records, and the calls'
totals, from our own store (no CallRail request). See docs/streams.md."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from api_shim.answers import PREFIX
from api_shim.answers_control import RecordsAnswer, SummaryAnswer
from api_shim.deps import Owner, Svc
from api_shim.envelope import success
from api_shim.openapi import refused
from callrail_sync import errors, records
from callrail_sync.stores.database import utcnow
from callrail_sync.stores.snapshots import Kind
from callrail_sync.streams import Stream

router = APIRouter(prefix=PREFIX, tags=["records"])


def known_stream(stream: str) -> Stream:
    """The path's stream, or a 404 before the query is read (an unknown stream is the
    first thing wrong with any query for it)."""
    try:
        return records.known_stream(stream)
    except LookupError as exc:
        raise errors.NotFound(str(exc.args[0])) from None


@router.get(
    "/records/calls/summary",
    summary="Totals of the calls, grouped, from our own roll-ups (no CallRail request)",
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
async def summarize_calls(
    owner: Owner, svc: Svc, q: Annotated[records.SummaryQuery, Query()]
) -> Response:
    asked = records.summary_request(owner, q, utcnow())
    version = await svc.cache.feed_version(asked.feed)
    key = ("summary", version, asked)
    body = await svc.cache.records.through(
        key, lambda: rendered(records.summarize_calls(svc.runtime.stores, asked))
    )
    return Response(body, media_type="application/json")


@router.get(
    "/records/{stream}",
    summary="One page of a stream's records, from our own store (cursor-paged)",
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
async def list_records(
    stream: Annotated[Stream, Depends(known_stream)],
    owner: Owner,
    svc: Svc,
    q: Annotated[records.RecordsQuery, Query()],
) -> Response:
    asked = records.records_request(owner, stream, q)
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
