"""GET /accounts and GET /companies: pages of snapshots, or the job that makes one."""

from __future__ import annotations

from typing import TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api_shim import validation as check
from api_shim.bodies import openapi_query
from api_shim.deps import Owner, Svc, require_key
from api_shim.listings import serve_listing
from api_shim.presenters import PREFIX
from worker.errors import ValidationFailed
from worker.job import JobParams
from worker.stores.snapshots import SORTABLE

MSG_ACCOUNT_REQUIRED = "Callrail account id is required."
router = APIRouter(prefix=PREFIX)


class ListingParams(BaseModel):
    """The query of a listing. Values arrive as text and are checked by the route, so that
    each bad one gets the envelope and a message naming it."""

    page: str | None = Field(None, description="page number, from 1")
    per_page: str | None = Field(None, description="1 to 250, default 10")
    sort: str | None = Field(None, description="a field; prefix - for descending")
    search: str | None = Field(None, description="case-insensitive substring of the name")
    refresh: str | None = Field(None, description="true: sync from CallRail now (202)")

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


Q = TypeVar("Q", bound=ListingParams)


class CompanyParams(ListingParams):
    """The query of the companies listing."""

    account_id: str | None = Field(None, description="CallRail account id (required)")
    disabled: str | None = Field(None, description="true: include disabled companies")


def _query(request: Request, model: type[Q]) -> Q:
    """The route's query, read here rather than by FastAPI: each bad value then gets the
    spec's envelope and a message naming it (and the route skips FastAPI's parameter pass)."""
    return model.model_validate(dict(request.query_params))


@router.get(
    "/accounts",
    summary="List the CallRail accounts of the caller's API key",
    openapi_extra=openapi_query(ListingParams),
)
async def list_accounts(request: Request, owner: Owner, svc: Svc) -> JSONResponse:
    await require_key(svc, owner)
    q = _query(request, ListingParams)
    query = check.page_query(q.as_dict(), SORTABLE["accounts"])
    refresh = check.flag(q.refresh, "refresh")
    return await serve_listing(svc, owner, "accounts", JobParams(), query, refresh=refresh)


@router.get(
    "/companies",
    summary="List, search and sort the companies of a CallRail account",
    openapi_extra=openapi_query(CompanyParams, required=frozenset({"account_id"})),
)
async def list_companies(request: Request, owner: Owner, svc: Svc) -> JSONResponse:
    await require_key(svc, owner)
    q = _query(request, CompanyParams)
    if not q.account_id:
        raise ValidationFailed(MSG_ACCOUNT_REQUIRED)
    params = JobParams(callrail_account_id=check.callrail_id(q.account_id, "account_id"))
    include_disabled = check.flag(q.disabled, "disabled")
    query = check.page_query(q.as_dict(), SORTABLE["companies"], include_disabled)
    refresh = check.flag(q.refresh, "refresh")
    return await serve_listing(svc, owner, "companies", params, query, refresh=refresh)
