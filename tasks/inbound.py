"""CallRail's deliveries after the receiver kept them: normalized into call and form events,
the signing key read again when one did not verify, and the calls CallRail never delivered
found by reconciliation.

CallRail sends each delivery once and never again, so beat reconciles every company with our
receiver: it lists the account's recent calls (`RECONCILE_WINDOW`, leaving the last
`RECONCILE_GRACE` to deliveries still on their way) and records each call that has no
post-call event as `reconciled`, under the key its delivery would have had. It also reads
each company's Webhooks integration, so one that CallRail disabled shows as such.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from callrail_sync import errors, metrics
from callrail_sync.budget import fingerprint
from callrail_sync.callrail import deliveries
from callrail_sync.callrail import webhooks as wh
from callrail_sync.callrail.calls import iter_calls, signing_key
from callrail_sync.callrail.client import CallRailClient
from callrail_sync.callrail.models import Integration
from callrail_sync.events import publish_call
from callrail_sync.job import Job, JobParams, JobType, Lane
from callrail_sync.runtime import Runtime
from callrail_sync.stores.database import utcnow
from callrail_sync.stores.inbox import NewCallEvent, Sighting
from callrail_sync.stores.receivers import Receiver, Registration
from callrail_sync.stores.snapshots import as_utc
from callrail_sync.urls import receiver_url
from tasks.jobs import Outcome
from tasks.streams import merge_calls
from tasks.submit import JobQueue, submit

log = logging.getLogger("callrail_sync.inbound")

MAX_BACKFILL = timedelta(days=3)
"""How far back a reconciliation reaches when the last one is older than its window."""
PENDING_AFTER = 60.0
"""Seconds after which a delivery not yet normalized is queued again (its message was lost)."""
SendKeys = Callable[[list[str]], None]
"""Queue the normalizing task for inbox keys."""


def normalize(rt: Runtime, keys: list[str]) -> dict[str, int]:
    """Turn kept deliveries into events (idempotent: a delivery is normalized once, and an
    event stored once); returns how many were stored, known already, or not events."""
    entries = rt.stores.inbox.entries(keys)
    receivers = {c: rt.stores.receivers.get(c) for c in {e.company_id for e in entries}}
    events: list[NewCallEvent] = []
    payloads: dict[str, dict[str, Any]] = {}
    for entry in entries:
        receiver = receivers[entry.company_id]
        payload = deliveries.parse(entry.raw)
        if receiver is None or payload is None:
            continue
        named = deliveries.named_event(entry.event)
        event = named or deliveries.event_of(payload)
        events.append(
            NewCallEvent(
                id=entry.id,
                owners=receiver.owners,
                callrail_account_id=receiver.callrail_account_id,
                company_id=entry.company_id,
                kind="form" if event == "form_captured" else "call",
                event=event,
                resource_id=deliveries.resource_id(payload),
                source="webhook",
                received_at=entry.received_at,
                start_time=as_utc(payload.get("start_time")),
                fields=deliveries.call_fields(payload),
                changes=deliveries.changes_of(payload),
            )
        )
        payloads[entry.id] = payload
    recorded = rt.stores.inbox.record(events)
    stored = set(recorded.stored)
    # Finished only when its event is there (or it is none): a delivery whose event could not
    # be stored stays pending, and the sweeper queues it again.
    present, made = recorded.present, {e.id for e in events}
    rt.stores.inbox.finish([e.id for e in entries if e.id in present or e.id not in made])
    for new in events:
        if new.id in stored:
            receiver = receivers[new.company_id]
            for owner in new.owners:
                if receiver is not None and may_read(rt, owner, receiver):
                    publish_call(rt.redis, rt.settings.redis_prefix, owner, new.view(), new.kind)
    # Each post-call or update delivery is merged into the call's record of the calls stream
    # (one record per call, whether the history sync or the delivery came first).
    merge_calls(rt, [(e, payloads[e.id]) for e in events if e.id in stored], "webhook")
    # "known": reconciliation recorded it first; the late delivery is noted on it.
    known = len(events) - len(stored)
    return {"stored": len(stored), "known": known, "not_events": len(entries) - len(events)}


def register(
    rt: Runtime,
    owner: str,
    client: CallRailClient,
    callrail_account_id: str,
    company_id: str,
    integration: Integration,
) -> None:
    """Our receiver is now in the company's integration: keep its signing key."""
    registration = Registration(
        callrail_account_id=callrail_account_id,
        company_id=company_id,
        integration_id=integration.id,
        signing_key=signing_key(client, callrail_account_id, integration.id),
        state=integration.state,
    )
    record = rt.stores.keys.record(owner)
    seen = fingerprint(record.api_key.get_secret_value()) if record is not None else None
    rt.stores.receivers.register(owner, registration, seen)


def may_read(rt: Runtime, owner: str, receiver: Receiver) -> bool:
    """Whether `owner` may read the company's calls now: it is one of the receiver's owners,
    its CallRail key works, and it is the key that last saw the company (a key deleted,
    revoked or replaced reads nothing until a companies sync with it lists the company)."""
    if owner not in receiver.owners:
        return False
    record = rt.stores.keys.record(owner)
    if record is None or not record.usable:
        return False
    seen = receiver.seen_by.get(owner)
    return seen is None or seen == fingerprint(record.api_key.get_secret_value())


def readable_companies(rt: Runtime, owner: str, callrail_account_id: str) -> list[str]:
    """The companies of a CallRail account whose calls `owner` may read now."""
    return [
        r.company_id
        for r in rt.stores.receivers.of_owner(owner)
        if r.callrail_account_id == callrail_account_id and may_read(rt, owner, r)
    ]


def review_readers(rt: Runtime, owner: str, callrail_account_id: str, snapshot_id: str) -> None:
    """After a companies sync by `owner`: its key vouches for the companies it listed, and
    stops reading the calls of those it no longer sees."""
    record = rt.stores.keys.record(owner)
    if record is None:
        return
    seen = fingerprint(record.api_key.get_secret_value())
    for receiver in rt.stores.receivers.of_owner(owner):
        if receiver.callrail_account_id != callrail_account_id:
            continue
        if rt.stores.snapshots.has_record("companies", snapshot_id, receiver.company_id):
            rt.stores.receivers.vouch(receiver.company_id, owner, seen)
        else:
            rt.stores.receivers.drop_owner(receiver.company_id, owner)
            log.info(
                "owner no longer reads a company's calls",
                extra={"owner": owner, "company_id": receiver.company_id},
            )


def signing_key_work(job: Job, rt: Runtime, client: CallRailClient) -> Outcome:
    """Read a company's signing key again (a delivery did not verify with the one we had)."""
    callrail_account_id, company_id = (
        job.params.need("callrail_account_id"),
        job.params.need("company_id"),
    )
    integrations = client.list_webhook_integrations(callrail_account_id, company_id)
    if not integrations:
        rt.stores.receivers.seen(company_id, "missing")
        return Outcome(result={"refreshed": False, "state": "missing"})
    current = integrations[0]
    key = signing_key(client, callrail_account_id, current.id)
    if key:
        rt.stores.receivers.set_key(company_id, key)
    rt.stores.receivers.seen(company_id, current.state)
    return Outcome(result={"refreshed": key is not None, "state": current.state})


def reconcile_work(job: Job, rt: Runtime, client: CallRailClient) -> Outcome:
    """Record the recent calls of an account's companies with our receiver that CallRail never
    delivered, and note which integrations no longer deliver to us."""
    callrail_account_id = job.params.need("callrail_account_id")
    receivers = {
        r.company_id: r
        for r in rt.stores.receivers.all()
        if r.callrail_account_id == callrail_account_id
    }
    s, now = rt.settings, utcnow()
    states: dict[str, str] = {}
    for company_id, receiver in receivers.items():
        state = states[company_id] = _delivering(rt, client, callrail_account_id, company_id)
        if state != receiver.state:
            log.warning(
                "receiver integration changed state in CallRail",
                extra={"company_id": company_id, "was": receiver.state, "now": state},
            )
        rt.stores.receivers.seen(company_id, state)  # seen even if the walk below fails
    # From the last reconciliation of the account (a few days back at most), so an outage of
    # reconciliation leaves no calls unchecked; the last RECONCILE_GRACE is left to deliveries.
    grace = timedelta(seconds=s.reconcile_grace)
    start = now - timedelta(seconds=s.reconcile_window)
    last = [r.reconciled_at for r in receivers.values() if r.reconciled_at is not None]
    if last and len(last) == len(receivers):
        start = max(min(min(last) - grace, start), now - MAX_BACKFILL)
    listed = missed = 0
    for calls in iter_calls(client, callrail_account_id, start, now - grace):
        listed += len(calls)
        by_company: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for call in calls:
            owner_of = receivers.get(str(call.get("company_id")))
            began = as_utc(call.get("start_time"))
            if owner_of is None or not deliveries.resource_id(call):
                continue
            if call.get("direction") == "outbound":
                continue  # outbound calls have webhooks of their own, which we do not register
            if began is not None and owner_of.registered_at and began < owner_of.registered_at:
                continue  # before our receiver was there: not a missed delivery
            by_company[owner_of.company_id].append(call)
        for company_id, group in by_company.items():
            missed += _record_missed(
                rt, receivers[company_id].owners, callrail_account_id, company_id, group
            )
    for company_id, state in states.items():
        rt.stores.receivers.seen(company_id, state, reconciled_at=now)
    if missed:
        metrics.MISSED.inc(missed)
        log.warning(
            "calls CallRail never delivered were recorded",
            extra={"callrail_account_id": callrail_account_id, "missed": missed},
        )
    inactive = {company: state for company, state in states.items() if state != "active"}
    result = {"companies": len(receivers), "calls": listed, "missed": missed, "inactive": inactive}
    return Outcome(result=result)


def _delivering(
    rt: Runtime, client: CallRailClient, callrail_account_id: str, company_id: str
) -> str:
    """Whether CallRail delivers the company's calls to us: `active`, or why not (`disabled`,
    `missing`: no Webhooks integration, `removed`: our URL is gone from it, `unreachable`:
    CallRail refused to show it, e.g. the company is gone or the key may not see it)."""
    try:
        found = client.list_webhook_integrations(callrail_account_id, company_id)
    except errors.CallRailSyncError as exc:
        if exc.retriable:
            raise  # the job is retried: nothing is known yet
        return "unreachable"
    if not found:
        return "missing"
    ours = receiver_url(rt.settings.public_base_url, company_id)
    if ours is not None and ours not in wh.urls_in(found[0], ours):
        return "removed"
    return found[0].state


def _record_missed(
    rt: Runtime,
    owners: list[str],
    callrail_account_id: str,
    company_id: str,
    calls: list[dict[str, Any]],
) -> int:
    ids = [deliveries.resource_id(c) for c in calls]
    sightings = [
        Sighting(call_id, as_utc(c.get("start_time")), c.get("customer_phone_number"))
        for call_id, c in zip(ids, calls, strict=True)
    ]
    have = rt.stores.inbox.known(company_id, "post_call", sightings)
    events = []
    for call, call_id in zip(calls, ids, strict=True):
        if call_id in have:
            continue
        new = NewCallEvent(
            id=deliveries.dedupe_key(company_id, "post_call", call_id, []),
            owners=owners,
            callrail_account_id=callrail_account_id,
            company_id=company_id,
            kind="call",
            event="post_call",
            resource_id=call_id,
            source="reconciled",
            received_at=utcnow(),
            start_time=as_utc(call.get("start_time")),
            fields=deliveries.call_fields(call),
        )
        events.append(new)
    stored = set(rt.stores.inbox.record(events).stored)
    by_id = dict(zip(ids, calls, strict=True))
    merge_calls(rt, [(e, by_id[e.resource_id]) for e in events if e.id in stored], "history")
    if stored:
        rt.stores.receivers.count(company_id, "missed", len(stored))
    for new in events:
        if new.id in stored:
            for owner in owners:
                publish_call(rt.redis, rt.settings.redis_prefix, owner, new.view())
    return len(stored)


def plan_reconciles(rt: Runtime, queue: JobQueue) -> list[dict[str, Any]]:
    """Queue a reconciliation per CallRail account with our receiver (beat's part), by one
    of its owners whose key works."""
    accounts: dict[str, str] = {}
    for receiver in rt.stores.receivers.all():
        if receiver.callrail_account_id not in accounts:
            owner = owner_with_key(rt, receiver)
            if owner is not None:
                accounts[receiver.callrail_account_id] = owner
    queued = []
    for callrail_account_id, owner in accounts.items():
        params = JobParams(callrail_account_id=callrail_account_id)
        job, created = submit(
            rt.stores.jobs, queue, owner, JobType.CALLS_RECONCILE, params, lane=Lane.PERIODIC
        )
        if created:
            queued.append({"job_id": job.id, "callrail_account_id": callrail_account_id})
    return queued


def owner_with_key(rt: Runtime, receiver: Receiver) -> str | None:
    """The first of the receiver's owners whose CallRail key works (the one its jobs use)."""
    for owner in receiver.owners:
        if rt.stores.keys.usable_key(owner) is not None:
            return owner
    return None


def resend_pending(rt: Runtime, send: SendKeys) -> int:
    """Queue again the deliveries whose normalizing message was lost (Redis was down)."""
    keys = rt.stores.inbox.pending(utcnow() - timedelta(seconds=PENDING_AFTER))
    for start in range(0, len(keys), 100):
        send(keys[start : start + 100])
    if keys:
        log.warning("deliveries queued again for normalizing", extra={"count": len(keys)})
    return len(keys)
