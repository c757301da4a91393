"""Webhook work: list, create and update the URLs of a company's Webhooks integration.

A write reads the integration and writes it back whole, so writes of one company hold its lock
(`callrail_sync/locks.py`) from the read to the write: two at once never lose one. Each checks the
current state first, so running one twice (a retry after a timeout whose request did reach
CallRail) never makes a second webhook or a second integration.
"""

from __future__ import annotations

from typing import Any

from callrail_sync import errors
from callrail_sync.callrail import webhooks as wh
from callrail_sync.callrail.client import CallRailClient
from callrail_sync.callrail.models import Integration
from callrail_sync.job import Job
from callrail_sync.runtime import Runtime
from callrail_sync.stores.webhooks import WebhookRecord
from callrail_sync.urls import receiver_url
from tasks import inbound
from tasks.jobs import Outcome

STATE_FOR_STATUS = {"enabled": "active", "disabled": "disabled"}
STATUS_FOR_STATE = {v: k for k, v in STATE_FOR_STATUS.items()}


def integration_fields(integration: Integration, keys: list[str]) -> dict[str, Any]:
    """What our record keeps of the integration for one of its URLs."""
    return {
        "integration_id": integration.id,
        "keys": keys,
        "status": STATUS_FOR_STATE.get(integration.state, integration.state),
        "updated_at": integration.updated_at,
    }


def remember(
    rt: Runtime,
    job: Job,
    callrail_account_id: str,
    company_id: str,
    integration: Integration,
    url: str,
) -> WebhookRecord:
    """Our record of one URL of the integration."""
    fields = created_fields(integration, url, ours(rt, company_id))
    return rt.stores.webhooks.remember(job.owner, callrail_account_id, company_id, url, fields)


NOT_FIRING = (
    "The company's webhooks are disabled in CallRail: this webhook will not fire until they "
    "are enabled (PUT it with status enabled)."
)


def shape(record: WebhookRecord, *, existing: bool = False) -> dict[str, Any]:
    """A webhook as the frontend sees it: `existing` says the URL was already there (nothing
    new was made), `fires` whether CallRail will call it now (and `note` why not)."""
    fires = record.status == "enabled"
    shaped: dict[str, Any] = {
        "id": record.id,
        "account_id": record.callrail_account_id,
        "company_id": record.company_id,
        "url": record.url,
        "status": record.status,
        "events": wh.events_for(record.keys),
        "integration_id": record.integration_id,
        "created_at": record.first_seen_at.isoformat() if record.first_seen_at else None,
        "updated_at": record.updated_at,
        "existing": existing,
        "fires": fires,
    }
    if not fires:
        shaped["note"] = NOT_FIRING
    return shaped


def lock_name(callrail_account_id: str, company_id: str) -> str:
    """One company's integration: what a webhook write holds while it reads and writes it."""
    return f"integration:{callrail_account_id}:{company_id}"


def list_work(job: Job, rt: Runtime, client: CallRailClient) -> Outcome:
    """The webhooks (URLs of the Webhooks integration) of one company."""
    callrail_account_id, company_id = (
        job.params.need("callrail_account_id"),
        job.params.need("company_id"),
    )
    found = [
        shape(remember(rt, job, callrail_account_id, company_id, integration, url))
        for integration in client.list_webhook_integrations(callrail_account_id, company_id)
        for url in wh.urls_in(integration, ours(rt, company_id))
    ]
    return Outcome(result={"webhooks": found})


def create_work(job: Job, rt: Runtime, client: CallRailClient) -> Outcome:
    """Add a URL to a company's Webhooks integration (making it if needed), under the
    company's lock; idempotent: a URL already there answers the existing webhook."""
    p = job.params
    callrail_account_id, company_id, url = (
        p.need("callrail_account_id"),
        p.need("company_id"),
        p.need("webhook_url"),
    )
    keys = wh.config_keys(p.events or list(wh.DEFAULT_EVENTS))
    wanted = STATE_FOR_STATUS[p.status] if p.status else None
    receiver = ours(rt, company_id)
    is_ours = url == receiver

    def added(config: dict[str, Any]) -> dict[str, list[str]]:
        return wh.with_receiver(config, url, keys) if is_ours else wh.with_url(config, url, keys)

    with rt.locks.hold(lock_name(callrail_account_id, company_id)) as held:
        existing = client.list_webhook_integrations(callrail_account_id, company_id)
        # There already (perhaps for fewer events, which are then added): not a new webhook.
        present = bool(existing) and url in wh.urls_in(existing[0], receiver)
        has = wh.has_receiver if is_ours else wh.has_url
        already = bool(existing) and has(existing[0], url, keys)
        held.confirm()
        if not existing:
            integration = client.create_webhook_integration(
                callrail_account_id, company_id, added({})
            )
        else:
            current = existing[0]
            config = None if already else added(current.config)
            state = wanted if wanted not in (None, current.state) else None
            integration = current
            if config is not None or state is not None:
                integration = client.update_integration(
                    callrail_account_id, current.id, config=config, state=state
                )
        if not existing and wanted == "disabled":
            held.confirm()
            integration = client.update_integration(
                callrail_account_id, integration.id, state=wanted
            )
        # Under the lock too: our records follow CallRail in the order CallRail changed.
        record = remember(rt, job, callrail_account_id, company_id, integration, url)
    if is_ours:
        # Our own receiver: it needs the key CallRail signs this company's deliveries with.
        inbound.register(rt, job.owner, client, callrail_account_id, company_id, integration)
    return Outcome(result=shape(record, existing=present))


def ours(rt: Runtime, company_id: str) -> str | None:
    """Our own receiver's URL for the company (None: the service has no public address)."""
    return receiver_url(rt.settings.public_base_url, company_id)


def created_fields(integration: Integration, url: str, receiver: str | None) -> dict[str, Any]:
    """What our record keeps of a URL the integration has. No `created_at`: the store notes
    when the URL is new (`first_seen_at`), and that is when this webhook was created; the
    integration's `created_at` is when its first URL was added."""
    return integration_fields(integration, wh.urls_in(integration, receiver).get(url, []))


def update_work(job: Job, rt: Runtime, client: CallRailClient) -> Outcome:
    """Change a webhook's URL and/or status (the integration's state), under the company's
    lock. A URL another webhook of the company already has merges into that one."""
    p = job.params
    record = rt.stores.webhooks.get(job.owner, p.need("webhook_id"))
    if record is None or (record.callrail_account_id, record.company_id) != (
        p.callrail_account_id,
        p.company_id,
    ):
        raise errors.WebhookNotFound()
    callrail_account_id, company_id = record.callrail_account_id, record.company_id
    receiver = ours(rt, company_id)
    if p.webhook_url not in (None, record.url) and receiver in (record.url, p.webhook_url):
        raise errors.ValidationFailed(wh.MOVE_RECEIVER)
    with rt.locks.hold(lock_name(callrail_account_id, company_id)) as held:
        integrations = client.list_webhook_integrations(callrail_account_id, company_id)
        if not integrations:
            raise errors.WebhookNotFound("The company has no webhooks in CallRail any more.")
        current = integrations[0]
        old_url, new_url = record.url, p.webhook_url or record.url
        present = wh.urls_in(current, receiver)
        if old_url not in present and new_url not in present:
            raise errors.WebhookNotFound("The webhook's URL is no longer configured in CallRail.")
        config = wh.replace_url(current.config, old_url, new_url) if new_url != old_url else None
        state = STATE_FOR_STATUS[p.status] if p.status else None
        if config == current.config:
            config = None  # a retry after the change went through: nothing left to send
        if state == current.state:
            state = None
        updated = current
        if config is not None or state is not None:
            held.confirm()
            updated = client.update_integration(
                callrail_account_id, current.id, config=config, state=state
            )
        # Under the lock too, so a create of `new_url` cannot slip in between.
        return Outcome(result=_moved(rt, job.owner, record, new_url, updated, receiver))


def _moved(
    rt: Runtime,
    owner: str,
    record: WebhookRecord,
    new_url: str,
    updated: Integration,
    receiver: str | None,
) -> dict[str, Any]:
    """Our records after a webhook's URL and/or status changed in CallRail."""
    fields = integration_fields(updated, wh.urls_in(updated, receiver).get(new_url, record.keys))
    other = rt.stores.webhooks.find(owner, record.callrail_account_id, record.company_id, new_url)
    if other is not None and other.id != record.id:
        # CallRail keeps one copy of a URL: this webhook is now that one.
        rt.stores.webhooks.forget(owner, record.id)
        merged = rt.stores.webhooks.move(owner, other.id, new_url, fields) or other
        return {**shape(merged, existing=True), "replaced_id": record.id}
    moved = rt.stores.webhooks.move(owner, record.id, new_url, fields)
    return shape(moved or record)
