"""The webhook routes: each answers 202 with the job that lists, creates or changes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api_shim.answers import PREFIX, accepted
from api_shim.bodies import MSG_CREATE_REQUIRED, MSG_UPDATE_REQUIRED, WebhookCreate, WebhookUpdate
from api_shim.deps import KeyedOwner, Services, Svc, require_account
from api_shim.openapi import jobs_only, refused
from api_shim.validation import AccountId, Checked, CompanyId, json_body, openapi_body
from api_shim.writes import COMPANY_NOT_FOUND, start_write
from callrail_sync.callrail.webhooks import MOVE_RECEIVER, RECEIVER_EVENTS
from callrail_sync.errors import API_KEY_NOT_FOUND, ValidationFailed
from callrail_sync.job import JobParams, JobType
from callrail_sync.urls import check_url, receiver_url

MSG_LIST_REQUIRED = "Callrail account id and company id are required."
router = APIRouter(prefix=PREFIX, tags=["webhooks"])


class WebhooksQuery(Checked):
    required, missing = ("account_id", "company_id"), MSG_LIST_REQUIRED
    account_id: AccountId
    company_id: CompanyId


WRITE = jobs_only(
    "The job that makes the change (its result holds the webhook); the same write asked "
    "again while it is active answers the same job."
)


def write_answers(required: str, invalid: str) -> dict[int | str, dict[str, Any]]:
    return refused(
        (400, 401, 404, 413, 429, 503),
        {400: (required, API_KEY_NOT_FOUND, invalid), 404: (COMPANY_NOT_FOUND,)},
    )


@router.get(
    "/companies/webhook",
    summary="List a company's webhooks (a job)",
    responses=refused(
        (400, 401, 404, 413, 429, 503), {400: (MSG_LIST_REQUIRED, API_KEY_NOT_FOUND)}
    ),
    **jobs_only("The job that lists the webhooks (its result holds them)."),
)
async def list_webhooks(
    owner: KeyedOwner, svc: Svc, q: Annotated[WebhooksQuery, Query()]
) -> JSONResponse:
    await require_account(svc, owner, q.account_id)
    params = JobParams(callrail_account_id=q.account_id, company_id=q.company_id)
    job, _ = await run_in_threadpool(
        svc.admission.submit, svc.queue, owner, JobType.WEBHOOK_LIST, params
    )
    return accepted(job)


@router.post(
    "/companies/webhook",
    summary="Create a webhook for a company (a job)",
    responses=write_answers(MSG_CREATE_REQUIRED, "webhook_url must be a valid http(s) URL."),
    openapi_extra=openapi_body(WebhookCreate),
    **WRITE,
)
async def create_webhook(
    owner: KeyedOwner,
    svc: Svc,
    body: Annotated[WebhookCreate, Depends(json_body(WebhookCreate))],
) -> JSONResponse:
    s = svc.runtime.settings
    ours = receiver_url(s.public_base_url, body.company_id)
    events = body.events
    if body.webhook_url is None:
        if ours is None:  # no public address: no receiver of ours to point CallRail at
            raise ValidationFailed(MSG_CREATE_REQUIRED)
        url, events = ours, events or list(RECEIVER_EVENTS)
    elif body.webhook_url == ours:
        url = ours  # our own receiver is not a user's URL: the URL policy is not for it
    else:
        url = check_url(body.webhook_url, "webhook_url", allow_private=s.allow_private_urls)
    params = JobParams(
        callrail_account_id=body.account_id,
        company_id=body.company_id,
        webhook_url=url,
        events=events,
        status=body.status,
    )
    return await write(svc, owner, JobType.WEBHOOK_CREATE, params)


@router.put(
    "/companies/webhook",
    summary="Change a webhook's URL and/or status (a job)",
    responses=write_answers(MSG_UPDATE_REQUIRED, "status must be 'enabled' or 'disabled'."),
    openapi_extra=openapi_body(WebhookUpdate),
    **WRITE,
)
async def update_webhook(
    owner: KeyedOwner,
    svc: Svc,
    body: Annotated[WebhookUpdate, Depends(json_body(WebhookUpdate))],
) -> JSONResponse:
    s = svc.runtime.settings
    url = body.webhook_url
    if url is not None:
        if url == receiver_url(s.public_base_url, body.company_id):
            raise ValidationFailed(MOVE_RECEIVER)
        url = check_url(url, "webhook_url", allow_private=s.allow_private_urls)
    params = JobParams(
        callrail_account_id=body.account_id,
        company_id=body.company_id,
        webhook_id=body.webhook_id,
        webhook_url=url,
        status=body.status,
    )
    return await write(svc, owner, JobType.WEBHOOK_UPDATE, params)


async def write(svc: Services, owner: str, job_type: JobType, params: JobParams) -> JSONResponse:
    """The job of a write (or the same write's, joined), after the account is checked."""
    await require_account(svc, owner, params.need("callrail_account_id"))
    return accepted(await run_in_threadpool(start_write, svc, owner, job_type, params))
