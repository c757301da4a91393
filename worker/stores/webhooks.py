"""Our records of webhooks (`callrail_webhooks`): a stable `web_…` id per URL of a company's
Webhooks integration, which CallRail itself has no id for."""

from __future__ import annotations

import secrets
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field
from pymongo import ASCENDING, ReturnDocument

from worker.stores.database import Db, utcnow

COLLECTION = "callrail_webhooks"


class WebhookRecord(BaseModel):
    """One URL of a company's Webhooks integration, as we last saw it."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(alias="_id")
    owner: str
    account_id: str
    company_id: str
    url: str
    integration_id: str | None = None
    keys: list[str] = Field(default_factory=list)
    """The integration's config keys that deliver to this URL."""
    status: str = "enabled"
    created_at: str | None = None
    updated_at: str | None = None


class WebhookStore(Protocol):
    """Find, remember and move webhook records."""

    def remember(
        self, owner: str, account_id: str, company_id: str, url: str, fields: dict[str, Any]
    ) -> WebhookRecord:
        """The record of a URL (found by owner, account, company and URL), made if new."""

    def get(self, owner: str, webhook_id: str) -> WebhookRecord | None:
        """The owner's record with this id."""

    def move(
        self, owner: str, webhook_id: str, url: str, fields: dict[str, Any]
    ) -> WebhookRecord | None:
        """Point an existing id at a new URL (an update keeps the id)."""


class MongoWebhookStore:
    """`WebhookStore` over `callrail_webhooks`."""

    def __init__(self, db: Db) -> None:
        self._webhooks = db[COLLECTION]

    def ensure_indexes(self) -> None:
        self._webhooks.create_index(
            [
                ("owner", ASCENDING),
                ("account_id", ASCENDING),
                ("company_id", ASCENDING),
                ("url", ASCENDING),
            ]
        )

    def remember(
        self, owner: str, account_id: str, company_id: str, url: str, fields: dict[str, Any]
    ) -> WebhookRecord:
        now = utcnow()
        doc = self._webhooks.find_one_and_update(
            {"owner": owner, "account_id": account_id, "company_id": company_id, "url": url},
            {
                "$set": {**fields, "seen_at": now},
                "$setOnInsert": {"_id": "web_" + secrets.token_hex(8), "first_seen_at": now},
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return WebhookRecord.model_validate(doc)

    def get(self, owner: str, webhook_id: str) -> WebhookRecord | None:
        doc = self._webhooks.find_one({"_id": webhook_id, "owner": owner})
        return WebhookRecord.model_validate(doc) if doc else None

    def move(
        self, owner: str, webhook_id: str, url: str, fields: dict[str, Any]
    ) -> WebhookRecord | None:
        doc = self._webhooks.find_one_and_update(
            {"_id": webhook_id, "owner": owner},
            {"$set": {"url": url, **fields, "seen_at": utcnow()}},
            return_document=ReturnDocument.AFTER,
        )
        return WebhookRecord.model_validate(doc) if doc else None
