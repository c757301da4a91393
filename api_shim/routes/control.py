"""Where the caller's syncs stand, and the controls over them: sync now, pause, resume."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, Field, model_validator
from starlette.concurrency import run_in_threadpool

from api_shim.answers import PREFIX, accepted
from api_shim.answers_control import (
    ListingState,
    ReceiverState,
    ScheduleAnswer,
    ScheduleView,
    StatusAnswer,
    StatusPage,
)
from api_shim.deps import KeyedOwner, Owner, Svc, require_account
from api_shim.openapi import jobs_only, refused
from api_shim.routes.changes import MSG_ACCOUNT, MSG_KIND
from api_shim.validation import AccountId, Checked, flag, json_body, openapi_body
from callrail_sync.errors import API_KEY_NOT_FOUND, SyncPaused
from callrail_sync.job import sync_job
from callrail_sync.status import owner_status
from callrail_sync.stores.database import utcnow
from callrail_sync.streams import STREAMS

MSG_SCHEDULE_REQUIRED = "account_id and paused are required."
MIN_INTERVAL, MAX_INTERVAL = 300, 7 * 86400
MSG_INTERVAL = f"interval_seconds must be a whole number from {MIN_INTERVAL} to {MAX_INTERVAL}."
router = APIRouter(prefix=PREFIX)


def _interval(raw: Any) -> int | None:
    if raw is not None and (
        not isinstance(raw, int) or isinstance(raw, bool) or not MIN_INTERVAL <= raw <= MAX_INTERVAL
    ):
        raise ValueError(MSG_INTERVAL)
    return raw


class SyncBody(BaseModel):
    """Body of POST /sync (all optional: the accounts listing by default)."""

    kind: Annotated[
        str,
        Field(
            description="`accounts`, `companies` or a stream (`calls`, `form_submissions`, "
            "`conversations`, `trackers`, `tags`, `users`); default: companies if account_id "
            "is given"
        ),
    ] = "accounts"
    reset: Annotated[
        bool,
        Field(description="true: walk from the first page, whatever an earlier attempt stored"),
        BeforeValidator(flag("reset", strict=True)),
    ] = False
    account_id: Annotated[
        AccountId | None, Field(description="the CallRail account (companies)")
    ] = None

    @model_validator(mode="before")
    @classmethod
    def _kind(cls, body: Any) -> Any:
        kind = body.get("kind") or ("companies" if body.get("account_id") else "accounts")
        if not isinstance(kind, str) or kind not in STREAMS:
            raise ValueError(MSG_KIND)
        if kind != "accounts" and not body.get("account_id"):
            raise ValueError(MSG_ACCOUNT)
        return {**body, "kind": kind}


class ScheduleBody(Checked):
    """Body of PUT /schedule."""

    required, missing = ("account_id", "paused"), MSG_SCHEDULE_REQUIRED

    account_id: Annotated[AccountId, Field(examples=["470306151"])]
    paused: Annotated[bool, BeforeValidator(flag("paused", strict=True))]
    interval_seconds: Annotated[
        int | None,
        Field(description=f"{MIN_INTERVAL}–{MAX_INTERVAL}; null: SYNC_INTERVAL", examples=[1800]),
        BeforeValidator(_interval),
    ] = None


@router.get(
    "/status",
    tags=["status"],
    summary="Where each of the caller's listings stands, and why",
    response_model=StatusAnswer,
    responses=refused((401, 413, 503)),
)
async def get_status(owner: Owner, svc: Svc) -> Any:
    now = utcnow()
    entries = await run_in_threadpool(owner_status, svc.runtime, owner, now)
    receivers = await run_in_threadpool(svc.runtime.stores.receivers.of_owner, owner)
    page = StatusPage(
        generated_at=now,
        listings=[ListingState.model_validate(e.model_dump()) for e in entries],
        receivers=[ReceiverState.of(r) for r in receivers],
    )
    return StatusAnswer(data=page)


@router.post(
    "/sync",
    tags=["sync"],
    summary="Sync a listing now (a job)",
    responses=refused(
        (400, 401, 404, 409, 413, 429, 503),
        {400: (MSG_KIND, MSG_ACCOUNT, API_KEY_NOT_FOUND, "reset must be true or false.")},
    ),
    openapi_extra=openapi_body(SyncBody),
    **jobs_only("The sync (joined if one is already active)."),
)
async def start_sync(
    owner: KeyedOwner,
    svc: Svc,
    body: Annotated[SyncBody, Depends(json_body(SyncBody, empty=True))],
) -> JSONResponse:
    stores = svc.runtime.stores
    account = None if body.kind == "accounts" else body.account_id or ""
    if account is not None:
        await require_account(svc, owner, account)
        schedule = await run_in_threadpool(stores.schedules.get, owner, account)
        if schedule is not None and schedule.paused:
            raise SyncPaused()
    job_type, params = sync_job(body.kind, account)
    if body.reset:
        params = params.model_copy(update={"reset": True})
    job, created = await run_in_threadpool(svc.admission.submit, svc.queue, owner, job_type, params)
    if body.reset and not created:
        asked = await run_in_threadpool(stores.jobs.ask_reset, job.id)
        job = asked if asked is not None else job
    return accepted(job)


@router.put(
    "/schedule",
    tags=["sync"],
    summary="Pause or resume a CallRail account's syncs, or give it its own interval",
    response_model=ScheduleAnswer,
    responses=refused((400, 401, 413, 503), {400: (MSG_SCHEDULE_REQUIRED, MSG_INTERVAL)}),
    openapi_extra=openapi_body(ScheduleBody),
)
async def set_schedule(
    owner: Owner,
    svc: Svc,
    body: Annotated[ScheduleBody, Depends(json_body(ScheduleBody))],
) -> Any:
    store = svc.runtime.stores.schedules
    schedule = await run_in_threadpool(
        store.set, owner, body.account_id, body.paused, body.interval_seconds
    )
    return ScheduleAnswer(data=ScheduleView.of(schedule))
