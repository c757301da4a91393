"""Our records of webhooks (`callrail_webhooks`): a stable `web_…` id per URL of a company's
Webhooks integration, which CallRail itself has no id for."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from callrail_sync.stores.database import Db, utcnow

COLLECTION = "callrail_webhooks"


class WebhookRecord(BaseModel):
    """One URL of a company's Webhooks integration, as we last saw it."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(alias="_id")
    owner: str
    callrail_account_id: str
    company_id: str
    url: str
    integration_id: str | None = None
    keys: list[str] = Field(default_factory=list)
    """The integration's config keys that deliver to this URL."""
    status: str = "enabled"
    first_seen_at: datetime | None = None
    """When this URL became one of the company's webhooks for us (we added it, or first saw
    it in CallRail): the webhook's `created_at`. The integration's own `created_at` is when
    its first URL was added, not this one."""
    updated_at: str | None = None


def _where(owner: str, account: str, company: str, url: str) -> dict[str, str]:
    """The record of one URL of a company, for one owner (the unique index's fields)."""
    return {"owner": owner, "callrail_account_id": account, "company_id": company, "url": url}


class WebhookStore:
    """Find, remember and move webhook records in `callrail_webhooks`."""

    def __init__(self, db: Db) -> None:
        self._webhooks = db[COLLECTION]

    def ensure_indexes(self) -> None:
        """One id per (owner, company, URL), as a property of the store: concurrent upserts
        of one URL cannot give it two ids. A store made before this had a plain index and may
        hold such twins: the oldest of each keeps the URL, then the index is made unique."""
        keys = [("owner", ASCENDING), ("callrail_account_id", ASCENDING)]
        keys += [("company_id", ASCENDING), ("url", ASCENDING)]
        # Stores made before the rename kept the CallRail account as `account_id`.
        for name, index in self._webhooks.index_information().items():
            if ("account_id", ASCENDING) in [tuple(k) for k in index["key"]]:
                self._webhooks.drop_index(name)
        self._webhooks.update_many(
            {"account_id": {"$exists": True}}, {"$rename": {"account_id": "callrail_account_id"}}
        )
        # Records made before webhooks had their own creation time kept the integration's.
        self._webhooks.update_many(
            {"created_at": {"$exists": True}}, {"$unset": {"created_at": ""}}
        )
        for name, index in self._webhooks.index_information().items():
            if index["key"] == keys and not index.get("unique"):
                self._drop_twins()
                self._webhooks.drop_index(name)
        self._webhooks.create_index(keys, unique=True)

    def _drop_twins(self) -> None:
        same = {f: f"${f}" for f in ("owner", "callrail_account_id", "company_id", "url")}
        twins = self._webhooks.aggregate(
            [
                {"$sort": {"first_seen_at": 1}},
                {"$group": {"_id": same, "ids": {"$push": "$_id"}}},
                {"$match": {"ids.1": {"$exists": True}}},
            ]
        )
        for twin in twins:
            self._webhooks.delete_many({"_id": {"$in": twin["ids"][1:]}})

    def remember(
        self,
        owner: str,
        callrail_account_id: str,
        company_id: str,
        url: str,
        fields: dict[str, Any],
    ) -> WebhookRecord:
        """The record of a URL (found by owner, account, company and URL), made if new."""
        now, key = utcnow(), _where(owner, callrail_account_id, company_id, url)
        update = {
            "$set": {**fields, "seen_at": now},
            "$setOnInsert": {"_id": "web_" + secrets.token_hex(8), "first_seen_at": now},
        }
        for _ in range(5):
            try:
                doc = self._webhooks.find_one_and_update(
                    key, update, upsert=True, return_document=ReturnDocument.AFTER
                )
            except DuplicateKeyError:
                continue  # a concurrent upsert made it first: the next try finds it
            # MongoDB always answers the document here; a server that lost the race
            # inside its upsert may answer none, and the next try finds the winner's.
            if doc is not None:
                return WebhookRecord.model_validate(doc)
        raise RuntimeError("could not remember the webhook")

    def get(self, owner: str, webhook_id: str) -> WebhookRecord | None:
        """The owner's record with this id."""
        doc = self._webhooks.find_one({"_id": webhook_id, "owner": owner})
        return WebhookRecord.model_validate(doc) if doc else None

    def find(
        self, owner: str, callrail_account_id: str, company_id: str, url: str
    ) -> WebhookRecord | None:
        """The owner's record of this URL of the company, if any."""
        doc = self._webhooks.find_one(_where(owner, callrail_account_id, company_id, url))
        return WebhookRecord.model_validate(doc) if doc else None

    def forget(self, owner: str, webhook_id: str) -> None:
        """Drop a record (its URL is gone from the integration)."""
        self._webhooks.delete_one({"_id": webhook_id, "owner": owner})

    def move(
        self, owner: str, webhook_id: str, url: str, fields: dict[str, Any]
    ) -> WebhookRecord | None:
        """Point an existing id at a new URL (an update keeps the id)."""
        doc = self._webhooks.find_one_and_update(
            {"_id": webhook_id, "owner": owner},
            {"$set": {"url": url, **fields, "seen_at": utcnow()}},
            return_document=ReturnDocument.AFTER,
        )
        return WebhookRecord.model_validate(doc) if doc else None
