"""The webhook routes: each answers 202 with the job that lists, creates or changes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from api_shim import validation as check
from api_shim.bodies import WebhookCreate, WebhookUpdate, company_ref, openapi_body
from api_shim.deps import Owner, Svc, require_key
from api_shim.presenters import PREFIX, accepted
from tasks.submit import submit
from worker.errors import ValidationFailed
from worker.job import JobParams, JobType

MSG_LIST_REQUIRED = "Callrail account id and company id are required."
router = APIRouter(prefix=PREFIX)


async def raw_body(request: Request) -> bytes:
    """The request body, read on the event loop so the route itself can run in a thread."""
    return await request.body()


RawBody = Annotated[bytes, Depends(raw_body)]


def _start(svc: Svc, owner: str, job_type: JobType, params: JobParams) -> JSONResponse:
    job, _ = submit(svc.runtime.stores.jobs, svc.queue, owner, job_type, params)
    return accepted(job)


def _body(svc: Svc, owner: str, raw: bytes) -> dict[str, Any]:
    """The JSON object of a write, once the caller is known to have a usable key (the spec
    checks the key before the fields)."""
    require_key(svc, owner)
    return check.json_object(raw)


@router.get("/companies/webhook", summary="List a company's webhooks (a job)")
def list_webhooks(
    owner: Owner,
    svc: Svc,
    account_id: str | None = Query(None),
    company_id: str | None = Query(None),
) -> JSONResponse:
    require_key(svc, owner)
    if not account_id or not company_id:
        raise ValidationFailed(MSG_LIST_REQUIRED)
    account, company = company_ref({"account_id": account_id, "company_id": company_id})
    params = JobParams(account_id=account, company_id=company)
    return _start(svc, owner, JobType.WEBHOOK_LIST, params)


def _write_route(body: type[WebhookCreate] | type[WebhookUpdate], job_type: JobType) -> Any:
    """A write route: the caller's key, then the body's fields, then the job."""

    def route(owner: Owner, svc: Svc, raw: RawBody) -> JSONResponse:
        return _start(svc, owner, job_type, body.params(_body(svc, owner, raw)))

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
