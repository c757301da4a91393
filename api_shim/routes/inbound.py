"""CallRail's deliveries to us, and the call events made of them.

`POST /inbound/{company_id}` takes no JWT: CallRail's signature over the raw body is the
authentication. A verified delivery is written to the inbox before the answer (so a 2xx means
it is kept), then queued for normalizing; the same delivery again is answered 2xx and kept
once. A wrong or missing signature is answered 401 and only counted; when a plausible one
fails, the company's signing key is read from CallRail again (rate-limited), and the deliveries
that fail meanwhile are verified again with it before they are refused.

`GET /calls` lists the caller's call events, newest first, cursor-paged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field, model_validator
from starlette.concurrency import run_in_threadpool

from api_shim.answers import PREFIX
from api_shim.answers_control import CallsAnswer, Received, ReceivedAnswer
from api_shim.deps import Owner, Services, Svc
from api_shim.envelope import failure
from api_shim.openapi import refused
from api_shim.routes.changes import Limit
from api_shim.validation import AccountId, Checked, CompanyId
from callrail_sync import cursors, feed, metrics
from callrail_sync.callrail import deliveries
from callrail_sync.job import JobParams, JobType
from callrail_sync.stores.inbox import CallsQuery, Kept
from callrail_sync.stores.receivers import Receiver
from tasks.inbound import owner_with_key, readable_companies
from tasks.submit import submit

log = logging.getLogger("callrail_sync.inbound")
router = APIRouter(prefix=PREFIX, tags=["calls"])

BAD_SIGNATURE = "The Signature header is missing, or does not match the body."
"""Also the answer for a company without our receiver: an outsider learns nothing."""
OTHER_COMPANY = "The delivery names another company."
TOO_MANY_FAILURES = "Too many refused deliveries; try again later."
REFRESH_EVERY = 300.0
"""Seconds between two readings of one company's signing key caused by failed signatures."""
REFRESHES_PER_HOUR = 10
"""Readings of signing keys that failed signatures may cause per CallRail account an hour."""
MSG_CALLS_ACCOUNT = "account_id is required."
BAD_CURSOR = "cursor is not valid for this listing (use the next_cursor of the same account)."


@router.post(
    "/inbound/{company_id}",
    summary="CallRail's deliveries for a company (signed by CallRail; no JWT)",
    response_model=ReceivedAnswer,
    responses=refused(
        (400, 401, 413, 429, 503),
        {400: (OTHER_COMPANY,), 401: (BAD_SIGNATURE,), 429: (TOO_MANY_FAILURES,)},
        public=True,
        why={
            400: "The signed body names another company (`company_resource_id`).",
            401: "`Signature` is missing, or is not base64(HMAC-SHA1(the company's signing "
            "key, the raw body)), or our receiver is not registered on this company (the "
            "same answer: an outsider cannot tell which); nothing is kept.",
            413: "The body is over INBOUND_MAX_BYTES (256 KiB unless set).",
            429: "More than INBOUND_FAILURES_PER_MINUTE refused deliveries from this address "
            "to this company this minute.",
        },
    ),
    openapi_extra={"security": []},  # CallRail's signature, not a bearer token
)
async def receive_inbound(company_id: str, request: Request, svc: Svc) -> Any:
    # The company first: an unknown one costs no body read, and is answered as a forged
    # delivery is (an outsider cannot tell which company ids have receivers).
    stores, writer = svc.runtime.stores, svc.inbox
    source = request.client.host if request.client else "unknown"
    receiver = await writer.receiver(company_id[:64])
    if receiver is None:
        metrics.INBOUND.labels("unknown_company").inc()
        return await _refused(svc, source, company_id[:64], None)
    raw = await request.body()
    signature = request.headers.get("signature")
    if not deliveries.verify(receiver.signing_key, raw, signature):
        if not await _may_try(svc, source, receiver.company_id):
            return _too_many()
        if not (signature and await _verifies_after_all(svc, receiver, raw, signature)):
            metrics.INBOUND.labels("forged").inc()
            return await _refused(svc, source, receiver.company_id, receiver, counted=True)
    payload = deliveries.parse(raw)
    if payload is None:
        # Signed by CallRail but not a JSON object: kept as it came, for an operator.
        key = deliveries.unreadable_key(receiver.company_id, raw)
        kept = [Kept(key, receiver.company_id, raw, "unreadable")]
        await run_in_threadpool(stores.inbox.accept_many, kept, "unreadable")
        await run_in_threadpool(stores.receivers.count, receiver.company_id, "unreadable")
        metrics.INBOUND.labels("unreadable").inc()
        return ReceivedAnswer(data=Received(received=True, duplicate=False, event="unreadable"))
    named = deliveries.company_named(payload)
    if named is not None and named != receiver.company_id:
        # Signed, but for another company (a key shared across companies): not this one's.
        metrics.INBOUND.labels("other_company").inc()
        log.warning("delivery refused: names another company", extra={"company_id": company_id})
        return failure(400, OTHER_COMPANY)
    event = deliveries.event_for(deliveries.named_event(request.query_params.get("event")), payload)
    resource = deliveries.resource_id(payload)
    changes = deliveries.changes_of(payload)
    key = deliveries.dedupe_key(receiver.company_id, event, resource, changes, raw)
    fresh = await writer.keep(Kept(key, receiver.company_id, raw, event))
    metrics.INBOUND.labels("accepted" if fresh else "duplicate").inc()
    return ReceivedAnswer(data=Received(received=True, duplicate=not fresh, event=event))


async def _may_try(svc: Services, source: str, company_id: str) -> bool:
    """Whether one more failed delivery from `source` to `company_id` may be looked at now
    (INBOUND_FAILURES_PER_MINUTE each: a flood of forgeries costs no reads, writes or key
    readings beyond it)."""
    granted, _, _ = await run_in_threadpool(
        svc.inbound_failures.try_acquire, f"{source}|{company_id}"
    )
    return bool(granted)


def _too_many() -> JSONResponse:
    metrics.INBOUND.labels("throttled").inc()
    answer = failure(429, TOO_MANY_FAILURES)
    answer.headers["Retry-After"] = "60"
    return answer


async def _refused(
    svc: Services, source: str, company_id: str, receiver: Receiver | None, counted: bool = False
) -> JSONResponse:
    """The answer to an unknown company and to a forged delivery alike."""
    if not counted and not await _may_try(svc, source, company_id):
        return _too_many()
    if receiver is not None:
        await run_in_threadpool(svc.runtime.stores.receivers.count, company_id, "forged")
        log.warning("delivery refused: bad signature", extra={"company_id": company_id})
    return failure(401, BAD_SIGNATURE)


async def _verifies_after_all(svc: Services, cached: Receiver, raw: bytes, signature: str) -> bool:
    """Whether the delivery verifies with the key as the store has it now, or as CallRail has
    it: the key is read again (a job) when a plausible delivery fails, at most once per
    REFRESH_EVERY per company and REFRESHES_PER_HOUR per CallRail account (forged requests must
    not spend the account's quota), and every delivery that fails meanwhile waits for it."""
    company, wait = cached.company_id, svc.runtime.settings.inbound_key_wait
    stored = await svc.inbox.receiver(company, fresh=True)
    if stored is None:
        return False
    if stored.signing_key != cached.signing_key and deliveries.verify(
        stored.signing_key, raw, signature
    ):
        return True
    if not deliveries.plausible(signature, raw, company):
        return False
    if not await _ask_for_key(svc, stored):
        # Another delivery asked for the key just now: wait for it as that one does.
        asked_at = await svc.claimed_at(f"inbound-key:{company}")
        if asked_at is None or time.time() - asked_at > wait:
            return False
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        now = await svc.inbox.receiver(company, fresh=True)
        if now is not None and now.key_fetched_at != stored.key_fetched_at:
            return deliveries.verify(now.signing_key, raw, signature)
    return False


async def _ask_for_key(svc: Services, receiver: Receiver) -> bool:
    """Queue a reading of the company's signing key, if one may be queued now."""
    company = receiver.company_id
    if not await svc.claim(f"inbound-key:{company}", REFRESH_EVERY):
        return False
    granted, _, _ = await run_in_threadpool(
        svc.key_readings.try_acquire, receiver.callrail_account_id
    )
    if not granted:
        return False
    owner = await run_in_threadpool(owner_with_key, svc.runtime, receiver)
    if owner is None:
        return False
    params = JobParams(callrail_account_id=receiver.callrail_account_id, company_id=company)
    stores = svc.runtime.stores
    await run_in_threadpool(submit, stores.jobs, svc.queue, owner, JobType.RECEIVER_KEY, params)
    return True


class CallsParams(Checked):
    """The query of GET /calls."""

    required, missing = ("account_id",), MSG_CALLS_ACCOUNT

    account_id: Annotated[AccountId, Field(description="CallRail account (required)")]
    company_id: Annotated[CompanyId | None, Field(description="only this company's calls")] = None
    since: Annotated[
        str | None,
        Field(description="ISO 8601: events stored at or after this time (to poll: the last's)"),
    ] = None
    cursor: Annotated[str | None, Field(description="`next_cursor` of the previous page")] = None
    limit: Limit = 100

    @model_validator(mode="before")
    @classmethod
    def _any_company(cls, query: Any) -> Any:
        return {k: v for k, v in query.items() if k != "company_id" or v}  # empty: any

    def query(self, owner: str) -> CallsQuery:
        return CallsQuery(
            owner=owner,
            callrail_account_id=self.account_id,
            company_id=self.company_id,
            since=feed.parse_time(self.since, "since"),
            before=_decode(self.cursor, self.account_id) if self.cursor else None,
            limit=self.limit,
        )


@router.get(
    "/calls",
    summary="Call events CallRail delivered (or reconciliation found), newest first",
    response_model=CallsAnswer,
    responses=refused(
        (400, 401, 413, 503),
        {400: (MSG_CALLS_ACCOUNT, BAD_CURSOR, "since must be an ISO 8601 time.")},
    ),
)
async def list_calls(owner: Owner, svc: Svc, q: Annotated[CallsParams, Query()]) -> Any:
    query = q.query(owner)
    # What the caller reads follows what its CallRail key sees now, not what it once saw.
    readable = await run_in_threadpool(
        readable_companies, svc.runtime, owner, query.callrail_account_id
    )
    query = query.model_copy(update={"readable": readable})
    events, more = await run_in_threadpool(svc.runtime.stores.inbox.read, query)
    account = query.callrail_account_id
    views: list[dict[str, Any]] = []
    room = svc.runtime.settings.calls_page_max_bytes
    for event in events:
        view = event.view()
        room -= len(json.dumps(view, separators=(",", ":"), default=str))
        if room < 0 and views:  # the rest on the next page (one event always fits)
            events, more = events[: len(views)], True
            break
        views.append(view)
    cursor = cursors.encode({"a": account, "s": events[-1].seq}) if more and events else None
    data = {
        "account_id": account,
        "calls": views,
        "next_cursor": cursor,
        "has_more": more,
    }
    return {"data": data}


def _decode(cursor: str, account: str) -> int:
    def valid(f: Any) -> bool:
        return f["a"] == account and isinstance(f["s"], int) and 0 < f["s"] < feed.MAX_SEQ

    return int(cursors.decode(cursor, valid, BAD_CURSOR)["s"])
