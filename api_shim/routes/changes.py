"""GET /changes: what changed in the caller's accounts or companies, in order, by cursor."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, BeforeValidator, Field, model_validator
from starlette.concurrency import run_in_threadpool

from api_shim.answers import PREFIX
from api_shim.answers_control import ChangesAnswer
from api_shim.deps import Owner, Svc
from api_shim.openapi import refused
from api_shim.validation import AccountId, whole
from callrail_sync import feed
from callrail_sync.stores.changes import FeedQuery
from callrail_sync.streams import STREAMS

MSG_KIND = f"kind must be one of: {', '.join(STREAMS)}."
MSG_ACCOUNT = "account_id is required for every kind but accounts."
MSG_SINCE = "modified_after must be an ISO 8601 time."
router = APIRouter(prefix=PREFIX, tags=["changes"])
Limit = Annotated[
    int,
    Field(ge=1, le=feed.MAX_LIMIT, description=f"1 to {feed.MAX_LIMIT}, default 100"),
    BeforeValidator(whole("limit", 100, feed.MAX_LIMIT)),
]


class ChangesQuery(BaseModel):
    """The query of GET /changes."""

    kind: Annotated[str, Field(description=f"one of {', '.join(STREAMS)}")]
    account_id: Annotated[
        AccountId | None, Field(description="CallRail account (all kinds but accounts)")
    ] = None
    cursor: Annotated[str | None, Field(description="`next_cursor` of the previous page")] = None
    modified_after: Annotated[
        str | None, Field(description="ISO 8601: changes after this time")
    ] = None
    filter: Annotated[
        str | None, Field(description="any of added,updated,deleted (default all)")
    ] = None
    limit: Limit = 100

    @model_validator(mode="before")
    @classmethod
    def _kind(cls, query: Any) -> Any:
        if query.get("kind") not in STREAMS:
            raise ValueError(MSG_KIND)
        if not STREAMS[query["kind"]].account_scoped:
            return {k: v for k, v in query.items() if k != "account_id"}
        if not query.get("account_id"):
            raise ValueError(MSG_ACCOUNT)
        return query

    def feed_query(self, owner: str) -> FeedQuery:
        query = FeedQuery(
            owner=owner,
            kind=self.kind,
            callrail_account_id=self.account_id,
            actions=feed.parse_actions(self.filter),
            modified_after=feed.parse_time(self.modified_after, "modified_after"),
            limit=self.limit,
        )
        if self.cursor:
            query = query.model_copy(update={"after": feed.decode_cursor(query, self.cursor)})
        return query


@router.get(
    "/changes",
    summary="Records added, updated or deleted in CallRail, in order (a cursor-paged feed)",
    response_model=ChangesAnswer,
    responses=refused(
        (400, 401, 413, 503),
        {
            400: (
                MSG_KIND,
                MSG_ACCOUNT,
                feed.BAD_CURSOR,
                MSG_SINCE,
            )
        },
    ),
)
async def list_changes(owner: Owner, svc: Svc, q: Annotated[ChangesQuery, Query()]) -> Any:
    query = q.feed_query(owner)
    page = await run_in_threadpool(feed.read_changes, svc.runtime.stores, query)
    data = {
        "kind": query.kind,
        "account_id": q.account_id,
        "changes": [c.model_dump(exclude={"seq"}) for c in page.changes],  # as ChangeItem
        "next_cursor": feed.encode_cursor(query, page.next_after),
        "has_more": page.has_more,
    }
    return {"data": data}
