"""The webhook routes: each answers 202 with the job that lists, creates or changes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api_shim import validation as check
from api_shim.bodies import WebhookCreate, WebhookUpdate, company_ref, openapi_body
from api_shim.deps import Owner, RawBody, Svc, require_account, require_key
from api_shim.presenters import PREFIX, accepted
from api_shim.writes import start_write
from callrail_sync.errors import ValidationFailed
from callrail_sync.job import JobParams, JobType

MSG_LIST_REQUIRED = "Callrail account id and company id are required."
router = APIRouter(prefix=PREFIX)


@router.get("/companies/webhook", summary="List a company's webhooks (a job)")
async def list_webhooks(
    owner: Owner,
    svc: Svc,
    account_id: str | None = Query(None),
    company_id: str | None = Query(None),
) -> JSONResponse:
    await require_key(svc, owner)
    if not account_id or not company_id:
        raise ValidationFailed(MSG_LIST_REQUIRED)
    account, company = company_ref({"account_id": account_id, "company_id": company_id})
    await require_account(svc, owner, account)
    params = JobParams(callrail_account_id=account, company_id=company)
    job, _ = await run_in_threadpool(
        svc.admission.submit, svc.queue, owner, JobType.WEBHOOK_LIST, params
    )
    return accepted(job)


def _write_route(body: type[WebhookCreate] | type[WebhookUpdate], job_type: JobType) -> Any:
    """A write route: the caller's key, then the body's fields, then the job (or a join)."""

    async def route(owner: Owner, svc: Svc, raw: RawBody) -> JSONResponse:
        await require_key(svc, owner)  # the spec checks the key before the fields
        s = svc.runtime.settings
        params = body.params(check.json_object(raw), s.allow_private_urls, s.public_base_url)
        await require_account(svc, owner, params.need("callrail_account_id"))
        return accepted(await run_in_threadpool(start_write, svc, owner, job_type, params))

    return route


for method, model, kind, summary in (
    ("POST", WebhookCreate, JobType.WEBHOOK_CREATE, "Create a webhook for a company (a job)"),
    ("PUT", WebhookUpdate, JobType.WEBHOOK_UPDATE, "Change a webhook's URL and/or status (a job)"),
):
    router.add_api_route(
        "/companies/webhook",
        _write_route(model, kind),
        methods=[method],
        summary=summary,
        openapi_extra=openapi_body(model),
        name=kind.value,
    )
