"""Webhook tasks: list, create and update the URLs of a company's Webhooks integration.

Writes check the current state first, so running one twice (a retry after a timeout whose
request did reach CallRail) never makes a second webhook or a second integration.
"""

from __future__ import annotations

from typing import Any

from tasks.jobs import run_job
from worker import errors
from worker.callrail import webhooks as wh
from worker.callrail.client import CallRailClient
from worker.callrail.models import Integration
from worker.celery_app import app
from worker.runtime import Runtime

STATE_FOR_STATUS = {"enabled": "active", "disabled": "disabled"}
STATUS_FOR_STATE = {v: k for k, v in STATE_FOR_STATUS.items()}


def _webhook(
    rt: Runtime,
    owner: str,
    account_id: str,
    company_id: str,
    integration: Integration,
    url: str,
    keys: list[str],
) -> dict[str, Any]:
    """Our record of one URL of the integration, in the spec's webhook shape."""
    record = rt.store.remember_webhook(
        owner,
        account_id,
        company_id,
        url,
        {
            "integration_id": integration.id,
            "keys": keys,
            "status": STATUS_FOR_STATE.get(integration.state, integration.state),
            "created_at": integration.created_at,
            "updated_at": integration.updated_at,
        },
    )
    return shape(record)


def shape(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": record["_id"],
        "account_id": record["account_id"],
        "company_id": record["company_id"],
        "url": record["url"],
        "status": record["status"],
        "events": wh.events_for(record.get("keys") or []),
        "integration_id": record.get("integration_id"),
        "created_at": record.get("created_at"),
        "updated_at": record.get("updated_at"),
    }


def list_work(job: dict[str, Any], rt: Runtime, client: CallRailClient) -> dict[str, Any]:
    p = job["params"]
    found = []
    for integration in client.list_webhook_integrations(p["account_id"], p["company_id"]):
        for url, keys in wh.urls_in(integration).items():
            found.append(
                _webhook(rt, job["owner"], p["account_id"], p["company_id"], integration, url, keys)
            )
    return {"result": {"webhooks": found}}


def create_work(job: dict[str, Any], rt: Runtime, client: CallRailClient) -> dict[str, Any]:
    p = job["params"]
    account_id, company_id, url = p["account_id"], p["company_id"], p["webhook_url"]
    keys = wh.config_keys(p.get("events") or list(wh.DEFAULT_EVENTS))
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
    return {
        "result": _webhook(
            rt,
            job["owner"],
            account_id,
            company_id,
            integration,
            url,
            wh.urls_in(integration).get(url, keys),
        )
    }


def update_work(job: dict[str, Any], rt: Runtime, client: CallRailClient) -> dict[str, Any]:
    p = job["params"]
    owner = job["owner"]
    record = rt.store.get_webhook(owner, p["webhook_id"])
    if (
        record is None
        or record["account_id"] != p["account_id"]
        or record["company_id"] != p["company_id"]
    ):
        raise errors.NotFound("Webhook not found.")
    account_id, company_id = record["account_id"], record["company_id"]
    integrations = client.list_webhook_integrations(account_id, company_id)
    if not integrations:
        raise errors.UpstreamNotFound("the company has no Webhooks integration", status=404)
    current = integrations[0]
    old_url, new_url = record["url"], p.get("webhook_url") or record["url"]
    if old_url not in wh.urls_in(current) and new_url not in wh.urls_in(current):
        raise errors.UpstreamNotFound(
            "the webhook URL is no longer configured in CallRail", status=404
        )
    config = wh.replace_url(current.config, old_url, new_url) if new_url != old_url else None
    state = STATE_FOR_STATUS[p["status"]] if p.get("status") else None
    if config == current.config:
        config = None  # a retry after the change went through: nothing left to send
    if state == current.state:
        state = None
    updated = current
    if config is not None or state is not None:
        updated = client.update_integration(account_id, current.id, config=config, state=state)
    keys = wh.urls_in(updated).get(new_url, record.get("keys") or [])
    moved = rt.store.move_webhook(
        owner,
        record["_id"],
        new_url,
        {
            "integration_id": updated.id,
            "keys": keys,
            "status": STATUS_FOR_STATE.get(updated.state, updated.state),
            "updated_at": updated.updated_at,
        },
    )
    return {"result": shape(moved or record)}


@app.task(bind=True, name="callrail.webhook.list", max_retries=None)
def list_webhooks(self: Any, job_id: str) -> dict[str, Any]:
    """List the webhooks (URLs of the Webhooks integration) of one company."""
    return run_job(self, job_id, list_work)


@app.task(bind=True, name="callrail.webhook.create", max_retries=None)
def create_webhook(self: Any, job_id: str) -> dict[str, Any]:
    """Add a URL to a company's Webhooks integration (making it if needed); idempotent."""
    return run_job(self, job_id, create_work)


@app.task(bind=True, name="callrail.webhook.update", max_retries=None)
def update_webhook(self: Any, job_id: str) -> dict[str, Any]:
    """Change a webhook's URL and/or status (the integration's state)."""
    return run_job(self, job_id, update_work)
