"""Where the caller's syncs stand, and the controls over them: sync now, pause, resume."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api_shim import validation as check
from api_shim.bodies import openapi_body
from api_shim.deps import Owner, RawBody, Svc, require_account, require_key
from api_shim.envelope import success
from api_shim.presenters import PREFIX, accepted, iso
from api_shim.routes.changes import MSG_ACCOUNT, MSG_KIND
from callrail_sync.errors import SyncPaused, ValidationFailed
from callrail_sync.job import JobParams, JobType
from callrail_sync.status import owner_status
from callrail_sync.stores.database import utcnow
from callrail_sync.stores.receivers import Receiver
from callrail_sync.stores.schedules import Schedule
from callrail_sync.streams import STREAMS

MSG_SCHEDULE_REQUIRED = "account_id and paused are required."
MIN_INTERVAL, MAX_INTERVAL = 300, 7 * 86400
MSG_INTERVAL = f"interval_seconds must be a whole number from {MIN_INTERVAL} to {MAX_INTERVAL}."
router = APIRouter(prefix=PREFIX)


class SyncBody(BaseModel):
    """Body of POST /sync (all optional: the accounts listing by default)."""

    account_id: str | None = Field(None, description="the CallRail account (companies)")
    kind: str | None = Field(
        None,
        description="`accounts`, `companies` or a stream (`calls`, `form_submissions`, "
        "`conversations`, `trackers`, `tags`, `users`); default: companies if account_id is "
        "given",
    )
    reset: bool | None = Field(
        None, description="true: walk from the first page, whatever an earlier attempt stored"
    )


class ScheduleBody(BaseModel):
    """Body of PUT /schedule."""

    account_id: str = Field(examples=["470306151"])
    paused: bool
    interval_seconds: int | None = Field(
        None, description=f"{MIN_INTERVAL}–{MAX_INTERVAL}; null: SYNC_INTERVAL", examples=[1800]
    )


def schedule_view(schedule: Schedule) -> dict[str, Any]:
    return {
        "account_id": schedule.callrail_account_id,
        "paused": schedule.paused,
        "interval_seconds": schedule.interval_seconds,
        "updated_at": iso(schedule.updated_at),
    }


@router.get("/status", summary="Where each of the caller's listings stands, and why")
async def status(owner: Owner, svc: Svc) -> JSONResponse:
    now = utcnow()
    entries = await run_in_threadpool(owner_status, svc.runtime, owner, now)
    listings = [e.model_dump(mode="json") for e in entries]
    receivers = await run_in_threadpool(svc.runtime.stores.receivers.of_owner, owner)
    return success(
        {
            "generated_at": iso(now),
            "listings": listings,
            "receivers": [receiver_view(r) for r in receivers],
        }
    )


def receiver_view(receiver: Receiver) -> dict[str, Any]:
    """What the owner sees of a company's receiver (never its signing key)."""
    return {
        "company_id": receiver.company_id,
        "account_id": receiver.callrail_account_id,
        "state": receiver.state,
        "receiving": receiver.state == "active",
        "registered_at": iso(receiver.registered_at),
        "reconciled_at": iso(receiver.reconciled_at),
        "counts": receiver.counts,
    }


@router.post("/sync", summary="Sync a listing now (a job)", openapi_extra=openapi_body(SyncBody))
async def sync_now(owner: Owner, svc: Svc, raw: RawBody) -> JSONResponse:
    body = check.json_object(raw) if raw.strip() else {}
    account = body.get("account_id")
    kind = body.get("kind") or ("companies" if account else "accounts")
    if not isinstance(kind, str) or kind not in STREAMS:
        raise ValidationFailed(MSG_KIND)
    reset = body.get("reset", False)
    if not isinstance(reset, bool):
        raise ValidationFailed("reset must be true or false.")
    await require_key(svc, owner)
    stores = svc.runtime.stores
    if kind != "accounts":
        if not account:
            raise ValidationFailed(MSG_ACCOUNT)
        account = check.callrail_id(account, "account_id")
        await require_account(svc, owner, account)
        schedule = await run_in_threadpool(stores.schedules.get, owner, account)
        if schedule is not None and schedule.paused:
            raise SyncPaused()
        job_type, params = JobType.SYNC_COMPANIES, JobParams(callrail_account_id=account)
        if kind != "companies":
            job_type = JobType.SYNC_STREAM
            params = JobParams(callrail_account_id=account, stream=kind)
    else:
        job_type, params = JobType.SYNC_ACCOUNTS, JobParams()
    if reset:
        params = params.model_copy(update={"reset": True})
    job, created = await run_in_threadpool(svc.admission.submit, svc.queue, owner, job_type, params)
    if reset and not created:
        asked = await run_in_threadpool(stores.jobs.ask_reset, job.id)
        job = asked if asked is not None else job
    return accepted(job)


@router.put(
    "/schedule",
    summary="Pause or resume a CallRail account's syncs, or give it its own interval",
    openapi_extra=openapi_body(ScheduleBody),
)
async def put_schedule(owner: Owner, svc: Svc, raw: RawBody) -> JSONResponse:
    body = check.json_object(raw)
    if not check.present(body, "account_id") or "paused" not in body:
        raise ValidationFailed(MSG_SCHEDULE_REQUIRED)
    account = check.callrail_id(body["account_id"], "account_id")
    paused = body["paused"]
    if not isinstance(paused, bool):
        raise ValidationFailed("paused must be true or false.")
    interval = body.get("interval_seconds")
    if interval is not None and (
        not isinstance(interval, int)
        or isinstance(interval, bool)
        or not MIN_INTERVAL <= interval <= MAX_INTERVAL
    ):
        raise ValidationFailed(MSG_INTERVAL)
    store = svc.runtime.stores.schedules
    schedule = await run_in_threadpool(store.set, owner, account, paused, interval)
    return success(schedule_view(schedule))
