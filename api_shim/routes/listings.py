"""GET /accounts and GET /companies: pages of snapshots, or the job that makes one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, BeforeValidator, Field

from api_shim.answers import PREFIX, AccountsAnswer, CompaniesAnswer
from api_shim.deps import KeyedOwner, Svc, require_account
from api_shim.listings import serve_listing
from api_shim.openapi import refused
from api_shim.validation import (
    MAX_PER_PAGE,
    AccountId,
    Checked,
    Page,
    PerPage,
    Search,
    flag,
    sort_order,
)
from callrail_sync.errors import API_KEY_NOT_FOUND
from callrail_sync.job import JobParams
from callrail_sync.stores.snapshots import SORTABLE, Kind, PageQuery

MSG_ACCOUNT_REQUIRED = "Callrail account id is required."
MSG_PER_PAGE = f"per_page must be between 1 and {MAX_PER_PAGE}."
Refresh = Annotated[
    bool,
    Field(description="true: sync from CallRail now (202)"),
    BeforeValidator(flag("refresh")),
]
router = APIRouter(prefix=PREFIX)


def _sorts(kind: Kind) -> str:
    return f"^-?({'|'.join(SORTABLE[kind])})$"


AccountsSort = Annotated[
    str, Field(pattern=_sorts("accounts")), BeforeValidator(sort_order(SORTABLE["accounts"]))
]
CompaniesSort = Annotated[
    str, Field(pattern=_sorts("companies")), BeforeValidator(sort_order(SORTABLE["companies"]))
]


class AccountsQuery(BaseModel):
    """The query of the accounts listing."""

    sort: AccountsSort = "name"
    page: Page = 1
    per_page: PerPage = 10
    search: Annotated[Search, Field(description="case-insensitive substring of the name")] = None
    refresh: Refresh = False

    def page_query(self, include_disabled: bool = True) -> PageQuery:
        field, descending = self.sort.lstrip("-"), self.sort.startswith("-")
        return PageQuery(
            page=self.page,
            per_page=self.per_page,
            sort=field,
            descending=descending,
            search=self.search,
            include_disabled=include_disabled,
        )


class CompaniesQuery(AccountsQuery, Checked):
    """The query of the companies listing (`account_id` is checked first: the spec's message)."""

    required, missing = ("account_id",), MSG_ACCOUNT_REQUIRED

    sort: CompaniesSort = "name"
    account_id: Annotated[AccountId, Field(description="CallRail account id (required)")]
    disabled: Annotated[
        bool, Field(description="true: include disabled"), BeforeValidator(flag("disabled"))
    ] = False

    def page_query(self, include_disabled: bool = False) -> PageQuery:
        return super().page_query(self.disabled)


@router.get(
    "/accounts",
    tags=["accounts"],
    summary="List the CallRail accounts of the caller's API key",
    response_model=AccountsAnswer,
    responses=refused(
        (400, 401, 413, 429, 503),
        {400: (API_KEY_NOT_FOUND, MSG_PER_PAGE)},
        accepted="No snapshot yet, or refresh=true: the job that syncs the accounts.",
    ),
)
async def list_accounts(owner: KeyedOwner, svc: Svc, q: Annotated[AccountsQuery, Query()]) -> Any:
    page = q.page_query()
    return await serve_listing(svc, owner, "accounts", JobParams(), page, refresh=q.refresh)


@router.get(
    "/companies",
    tags=["companies"],
    summary="List, search and sort the companies of a CallRail account",
    response_model=CompaniesAnswer,
    responses=refused(
        (400, 401, 404, 409, 413, 429, 503),
        {400: (MSG_ACCOUNT_REQUIRED, API_KEY_NOT_FOUND, "account_id is not a valid id.")},
        accepted="No snapshot yet, or refresh=true: the job that syncs the companies.",
    ),
)
async def list_companies(owner: KeyedOwner, svc: Svc, q: Annotated[CompaniesQuery, Query()]) -> Any:
    await require_account(svc, owner, q.account_id)
    params = JobParams(callrail_account_id=q.account_id)
    return await serve_listing(svc, owner, "companies", params, q.page_query(), refresh=q.refresh)
