"""GET /changes: what changed in the caller's accounts or companies, in order, by cursor."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api_shim import validation as check
from api_shim.bodies import openapi_query
from api_shim.deps import Owner, Svc
from api_shim.envelope import success
from api_shim.presenters import PREFIX
from callrail_sync import feed
from callrail_sync.errors import ValidationFailed
from callrail_sync.stores.changes import FeedQuery
from callrail_sync.streams import STREAMS

MSG_KIND = f"kind must be one of: {', '.join(STREAMS)}."
MSG_ACCOUNT = "account_id is required for every kind but accounts."
router = APIRouter(prefix=PREFIX)


class ChangesQuery(BaseModel):
    """The query of GET /changes (read as text, so each bad value gets its own message)."""

    kind: str | None = Field(None, description=f"one of {', '.join(STREAMS)} (required)")
    account_id: str | None = Field(None, description="CallRail account (all kinds but accounts)")
    cursor: str | None = Field(None, description="`next_cursor` of the previous page")
    modified_after: str | None = Field(None, description="ISO 8601: changes after this time")
    filter: str | None = Field(None, description="any of added,updated,deleted (default all)")
    limit: str | None = Field(None, description=f"1 to {feed.MAX_LIMIT}, default 100")

    def feed_query(self, owner: str) -> tuple[FeedQuery, str | None]:
        if self.kind not in STREAMS:
            raise ValidationFailed(MSG_KIND)
        kind = self.kind
        account = None
        if STREAMS[kind].account_scoped:
            if not self.account_id:
                raise ValidationFailed(MSG_ACCOUNT)
            account = check.callrail_id(self.account_id, "account_id")
        query = FeedQuery(
            owner=owner,
            kind=kind,
            callrail_account_id=account,
            actions=feed.parse_actions(self.filter),
            modified_after=feed.parse_time(self.modified_after, "modified_after"),
            limit=check.page_number(self.limit, "limit", 100, feed.MAX_LIMIT),
        )
        if self.cursor:
            query = query.model_copy(update={"after": feed.decode_cursor(query, self.cursor)})
        return query, account


@router.get(
    "/changes",
    summary="Records added, updated or deleted in CallRail, in order (a cursor-paged feed)",
    openapi_extra=openapi_query(ChangesQuery),
)
async def changes(request: Request, owner: Owner, svc: Svc) -> JSONResponse:
    query, account = ChangesQuery.model_validate(dict(request.query_params)).feed_query(owner)
    stores = svc.runtime.stores
    if STREAMS[query.kind].store == "records":
        page = await run_in_threadpool(
            stores.streams.changes,
            query.feed,
            query.after,
            query.actions,
            query.limit,
            query.modified_after,
        )
    else:
        page = await run_in_threadpool(stores.changes.read, query)
    return success(
        {
            "kind": query.kind,
            "account_id": account,
            "changes": [feed.change_view(c) for c in page.changes],
            "next_cursor": feed.encode_cursor(query, page.next_after),
            "has_more": page.has_more,
        }
    )
