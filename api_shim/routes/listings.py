"""GET /accounts and GET /companies: pages of snapshots, or the job that makes one."""

from __future__ import annotations

from typing import Any, ClassVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api_shim import validation as check
from api_shim.bodies import openapi_query
from api_shim.deps import Owner, Svc, require_account, require_key
from api_shim.listings import serve_listing
from api_shim.presenters import PREFIX
from callrail_sync.errors import ValidationFailed
from callrail_sync.job import JobParams
from callrail_sync.stores.snapshots import SORTABLE, Kind, PageQuery

MSG_ACCOUNT_REQUIRED = "Callrail account id is required."
router = APIRouter(prefix=PREFIX)


class ListingParams(BaseModel):
    """The query of the accounts listing. Values arrive as text and are checked here, so that
    each bad one gets the envelope and a message naming it."""

    kind: ClassVar[Kind] = "accounts"

    page: str | None = Field(None, description="page number, from 1")
    per_page: str | None = Field(None, description="1 to 250, default 10")
    sort: str | None = Field(None, description="a field; prefix - for descending")
    search: str | None = Field(None, description="case-insensitive substring of the name")
    refresh: str | None = Field(None, description="true: sync from CallRail now (202)")

    def job_params(self) -> JobParams:
        """What the sync of this listing is asked to do."""
        return JobParams()

    def page_query(self) -> PageQuery:
        given = {k: v for k, v in self.model_dump().items() if v is not None}
        return check.page_query(given, SORTABLE[self.kind])


class CompanyParams(ListingParams):
    """The query of the companies listing."""

    kind: ClassVar[Kind] = "companies"

    account_id: str | None = Field(None, description="CallRail account id (required)")
    disabled: str | None = Field(None, description="true: include disabled companies")

    def job_params(self) -> JobParams:
        if not self.account_id:
            raise ValidationFailed(MSG_ACCOUNT_REQUIRED)
        return JobParams(callrail_account_id=check.callrail_id(self.account_id, "account_id"))

    def page_query(self) -> PageQuery:
        given = {k: v for k, v in self.model_dump().items() if v is not None}
        disabled = check.flag(self.disabled, "disabled")
        return check.page_query(given, SORTABLE[self.kind], include_disabled=disabled)


def listing_route(model: type[ListingParams]) -> Any:
    """A listing route: the caller's key, then the query (read here rather than by FastAPI,
    so each bad value gets the spec's envelope and message), then the page or the job."""

    async def route(request: Request, owner: Owner, svc: Svc) -> JSONResponse:
        await require_key(svc, owner)
        q = model.model_validate(dict(request.query_params))
        params, query = q.job_params(), q.page_query()
        refresh = check.flag(q.refresh, "refresh")
        if params.callrail_account_id is not None:
            await require_account(svc, owner, params.callrail_account_id)
        return await serve_listing(svc, owner, model.kind, params, query, refresh=refresh)

    return route


for path, model, summary in (
    ("/accounts", ListingParams, "List the CallRail accounts of the caller's API key"),
    ("/companies", CompanyParams, "List, search and sort the companies of a CallRail account"),
):
    router.add_api_route(
        path,
        listing_route(model),
        methods=["GET"],
        summary=summary,
        openapi_extra=openapi_query(model),
        name=f"list_{model.kind}",
    )
