"""Telling an owner's backend that a job ended: a signed POST, retried until it is taken.

When a job ends, `announce` records a delivery (one per job and event) and queues
`callrail.notify.deliver`. Each attempt is written to the delivery before the next is
planned; a 2xx ends it, anything else (a non-2xx, a timeout, a refused connection) is tried
again with backoff until NOTIFY_RETRY_FOR has passed since the job ended. The sweeper resends
deliveries whose message was lost. Announcing never changes how the job ended.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery import Task
from celery.exceptions import Retry

from callrail_sync import errors, metrics, outbound
from callrail_sync.job import SYNC_TYPES, WRITE_TYPES, Job, JobStatus, JobType
from callrail_sync.outbound import Policy
from callrail_sync.runtime import Runtime, runtime
from callrail_sync.signatures import HEADER, sign
from callrail_sync.stores.database import utcnow
from callrail_sync.stores.notifications import Attempt, Notification, NotificationConfig
from callrail_sync.urls import check_url
from tasks.names import TaskName

log = logging.getLogger("callrail_sync.notify")

MAX_WAIT = 15 * 60.0
"""The longest wait between two attempts of a delivery."""
KEEP_DAYS = 7
"""How long finished deliveries stay listed."""
Send = Callable[[str, float | None], None]
"""Queue the delivery task for a delivery id, with a countdown."""


def event_for(job: Job) -> str | None:
    """What a final job announces, if anything."""
    if job.type in SYNC_TYPES:
        return "sync.succeeded" if job.status is JobStatus.SUCCEEDED else "sync.failed"
    if job.type in WRITE_TYPES and job.status is JobStatus.SUCCEEDED:
        return "webhook.changed"
    return None


def payload(event: str, job: Job) -> dict[str, Any]:
    """The body of a notification (what docs/api.md documents)."""
    result = job.result or {}
    body: dict[str, Any] = {
        "event": event,
        "delivery_id": delivery_id(job.id, event),
        "job_id": job.id,
        "kind": job.params.stream or _kind(job.type),
        "callrail_account_id": job.params.callrail_account_id,
        # What the job changed; nothing when it failed or was not a sync.
        "counts": result.get("changes")
        or dict.fromkeys(("added", "updated", "deleted", "total"), 0),
        "status": job.status.value,
        "error": job.error.model_dump(mode="json") if job.error else None,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }
    if job.type in WRITE_TYPES:
        body["company_id"] = job.params.company_id
        body["webhook"] = job.result
    return body


def delivery_id(job_id: str, event: str) -> str:
    return f"dlv_{job_id}.{event}"


def announce(rt: Runtime, job: Job, send: Send) -> None:
    """Record and queue the owner's notification of a final job, if they asked for one."""
    event = event_for(job)
    if event is None:
        return
    try:
        config = rt.stores.notifications.config(job.owner)
        if config is None or event not in config.events:
            return
        body = json.dumps(payload(event, job), separators=(",", ":"))
        give_up = utcnow() + timedelta(seconds=rt.settings.notify_retry_for)
        store = rt.stores.notifications
        delivery = store.new_notification(job.owner, event, job.id, config.url, body, give_up)
        if not delivery.attempts:
            send(delivery.id, None)
    except Exception as exc:
        # Left pending (if it was recorded): the sweeper sends it.
        log.error("could not announce job", extra={"job_id": job.id, "error": type(exc).__name__})


def sender(task: Task) -> Send:
    """Queue deliveries through the broker of the app running `task`."""

    def send(delivery_id: str, countdown: float | None) -> None:
        task.app.send_task(TaskName.NOTIFY, args=[delivery_id], countdown=countdown)

    return send


def resend_overdue(rt: Runtime, send: Send) -> int:
    """Queue again the pending deliveries whose message was lost, and forget finished ones
    older than KEEP_DAYS (the sweeper's part)."""
    rt.stores.notifications.prune(utcnow() - timedelta(days=KEEP_DAYS))
    late = utcnow() - timedelta(seconds=rt.settings.notify_timeout + 60)
    overdue = rt.stores.notifications.overdue(late)
    for delivery in overdue:
        send(delivery.id, None)
    if overdue:
        log.warning("overdue notifications requeued", extra={"count": len(overdue)})
    return len(overdue)


def deliver(task: Task, delivery_id: str) -> dict[str, Any]:
    """One attempt of a delivery, and the plan for the next one."""
    rt = runtime()
    store = rt.stores.notifications
    # Claimed first: a second message of the same delivery (a redelivered job's announcement,
    # the sweeper's resend) finds it taken or not due, and POSTs nothing.
    delivery = store.claim(delivery_id, hold=2 * rt.settings.notify_timeout + 30)
    if delivery is None:
        found = store.notification(delivery_id)
        return {"delivery_id": delivery_id, "status": found.status if found else "missing"}
    config = store.config(delivery.owner)
    if config is None:
        gone = Attempt(at=utcnow(), error="the callback was removed", ms=0)
        store.record_attempt(delivery_id, gone, "failed", None)
        return {"delivery_id": delivery_id, "status": "failed"}
    attempt, retriable = post(rt, config, delivery)
    context = {"delivery_id": delivery_id, "owner": delivery.owner, "event": delivery.event}
    if attempt.status_code is not None and 200 <= attempt.status_code < 300:
        store.record_attempt(delivery_id, attempt, "delivered", None)
        metrics.NOTIFICATIONS.labels("delivered").inc()
        log.info("notification delivered", extra={**context, "ms": attempt.ms})
        return {"delivery_id": delivery_id, "status": "delivered"}
    wait = backoff(len(delivery.attempts) + 1, rt.settings.notify_backoff_base)
    next_at = utcnow() + timedelta(seconds=wait)
    if not retriable or next_at > delivery.give_up_at:
        store.record_attempt(delivery_id, attempt, "failed", None)
        metrics.NOTIFICATIONS.labels("failed").inc()
        log.warning("notification given up", extra={**context, "answer": _said(attempt)})
        return {"delivery_id": delivery_id, "status": "failed"}
    store.record_attempt(delivery_id, attempt, "pending", next_at)
    metrics.NOTIFICATIONS.labels("retrying").inc()
    log.info("notification will retry", extra={**context, "answer": _said(attempt), "wait": wait})
    try:
        raise task.retry(countdown=wait, exc=None)
    except Retry:
        raise
    except Exception as failure:
        # Still pending: the sweeper sends it once it is overdue.
        log.error("could not requeue notification", extra={**context, "error": str(failure)})
        return {"delivery_id": delivery_id, "status": "pending"}


def post(rt: Runtime, config: NotificationConfig, delivery: Notification) -> tuple[Attempt, bool]:
    """POST the delivery's body, signed now, to the callback; (what happened, worth retrying).

    The host is resolved once and called at the address that was checked (callrail_sync/
    outbound.py), the whole attempt has NOTIFY_TIMEOUT seconds, and only the status line of
    the answer is read."""
    started, at = time.perf_counter(), utcnow()
    s = rt.settings
    policy = Policy.of(s.allow_private_urls, s.allowed_networks)
    try:
        url = check_url(config.url, "url", allow_private=s.allow_private_urls)
    except errors.ValidationFailed as refused:
        return Attempt(at=at, url=config.url, error=refused.user_message, ms=0), False
    body = delivery.body.encode()
    secrets = config.signing_secrets(utcnow())
    headers = [
        ("Content-Type", "application/json"),
        ("User-Agent", "callrail-sync"),
        # After a rotation the old secret signs too, for a while: retries in flight verify.
        (HEADER, sign(secrets[0], body, also=secrets[1:])),
        ("X-Callrail-Sync-Event", delivery.event),
        ("X-Callrail-Sync-Notification", delivery.id),
    ]
    status_code: int | None = None
    error: str | None = None
    try:
        answer = outbound.post(url, body, headers, timeout=s.notify_timeout, policy=policy)
        status_code = answer.status_code
    except errors.ValidationFailed as refused:
        return Attempt(at=at, url=url, error=refused.user_message, ms=0), False
    except outbound.CallFailed as failed:
        error = failed.reason
    ms = round((time.perf_counter() - started) * 1000, 1)
    return Attempt(at=at, url=url, status_code=status_code, error=error, ms=ms), True


def backoff(attempt: int, base: float) -> float:
    """Seconds before attempt `attempt + 1`: doubling from `base`, capped, with jitter."""
    ceiling = min(MAX_WAIT, base * 2.0 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def _said(attempt: Attempt) -> str:
    return str(attempt.status_code) if attempt.status_code is not None else attempt.error or "?"


def _kind(job_type: JobType) -> str:
    if job_type is JobType.SYNC_ACCOUNTS:
        return "accounts"
    return "companies" if job_type is JobType.SYNC_COMPANIES else "webhooks"
