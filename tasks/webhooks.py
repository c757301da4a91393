"""Webhook work: list, create and update the URLs of a company's Webhooks integration.

Writes check the current state first, so running one twice (a retry after a timeout whose
request did reach CallRail) never makes a second webhook or a second integration.
"""

from __future__ import annotations

from typing import Any

from tasks.jobs import Outcome
from worker import errors
from worker.callrail import webhooks as wh
from worker.callrail.client import CallRailClient
from worker.callrail.models import Integration
from worker.job import Job
from worker.runtime import Runtime
from worker.stores.webhooks import WebhookRecord

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
    rt: Runtime, job: Job, account_id: str, company_id: str, integration: Integration, url: str
) -> dict[str, Any]:
    """Our record of one URL of the integration, in the spec's webhook shape."""
    keys = wh.urls_in(integration).get(url, [])
    fields = {**integration_fields(integration, keys), "created_at": integration.created_at}
    return shape(rt.stores.webhooks.remember(job.owner, account_id, company_id, url, fields))


def shape(record: WebhookRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "account_id": record.account_id,
        "company_id": record.company_id,
        "url": record.url,
        "status": record.status,
        "events": wh.events_for(record.keys),
        "integration_id": record.integration_id,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def list_work(job: Job, rt: Runtime, client: CallRailClient) -> Outcome:
    """The webhooks (URLs of the Webhooks integration) of one company."""
    account_id, company_id = job.params.need("account_id"), job.params.need("company_id")
    found = [
        remember(rt, job, account_id, company_id, integration, url)
        for integration in client.list_webhook_integrations(account_id, company_id)
        for url in wh.urls_in(integration)
    ]
    return Outcome(result={"webhooks": found})


def create_work(job: Job, rt: Runtime, client: CallRailClient) -> Outcome:
    """Add a URL to a company's Webhooks integration (making it if needed); idempotent."""
    p = job.params
    account_id, company_id, url = p.need("account_id"), p.need("company_id"), p.need("webhook_url")
    keys = wh.config_keys(p.events or list(wh.DEFAULT_EVENTS))
    existing = client.list_webhook_integrations(account_id, company_id)
    if not existing:
        integration = client.create_webhook_integration(
            account_id, company_id, wh.with_url({}, url, keys)
        )
    elif wh.has_url(existing[0], url, keys):
        integration = existing[0]  # already configured: the job succeeds with what is there
    else:
        current = existing[0]
        integration = client.update_integration(
            account_id, current.id, config=wh.with_url(current.config, url, keys)
        )
    return Outcome(result=remember(rt, job, account_id, company_id, integration, url))


def update_work(job: Job, rt: Runtime, client: CallRailClient) -> Outcome:
    """Change a webhook's URL and/or status (the integration's state)."""
    p = job.params
    record = rt.stores.webhooks.get(job.owner, p.need("webhook_id"))
    if record is None or (record.account_id, record.company_id) != (p.account_id, p.company_id):
        raise errors.NotFound("Webhook not found.")
    integrations = client.list_webhook_integrations(record.account_id, record.company_id)
    if not integrations:
        raise errors.UpstreamNotFound("the company has no Webhooks integration", status=404)
    current = integrations[0]
    old_url, new_url = record.url, p.webhook_url or record.url
    if old_url not in wh.urls_in(current) and new_url not in wh.urls_in(current):
        raise errors.UpstreamNotFound(
            "the webhook URL is no longer configured in CallRail", status=404
        )
    config = wh.replace_url(current.config, old_url, new_url) if new_url != old_url else None
    state = STATE_FOR_STATUS[p.status] if p.status else None
    if config == current.config:
        config = None  # a retry after the change went through: nothing left to send
    if state == current.state:
        state = None
    updated = current
    if config is not None or state is not None:
        updated = client.update_integration(
            record.account_id, current.id, config=config, state=state
        )
    keys = wh.urls_in(updated).get(new_url, record.keys)
    moved = rt.stores.webhooks.move(
        job.owner, record.id, new_url, integration_fields(updated, keys)
    )
    return Outcome(result=shape(moved or record))
