"""The CallRail API keys of DashClicks accounts (the spec's `integrations.callrail.key`).

One key per DashClicks account (`account_id`, an ObjectId). Storing a new key soft-deletes the
old one; a key with `deleted` true is never used, nor one CallRail rejected: `invalid_at` says
when CallRail answered 401, `invalid_fingerprint` which key it was. A new key clears that,
whether it comes as a new document (ours, `set`) or is written over the old one in place.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from pydantic import BaseModel, SecretStr
from pymongo import ASCENDING, DESCENDING

from callrail_sync.budget import fingerprint
from callrail_sync.stores.database import Db, utcnow

COLLECTION = "integrations.callrail.key"


class ApiKeyRecord(BaseModel):
    """A stored key; `api_key` is a SecretStr so that no repr or log line shows it."""

    record_id: Any
    owner: str
    api_key: SecretStr
    invalid_at: datetime | None = None
    invalid_fingerprint: str | None = None
    created_at: datetime | None = None

    @property
    def rejected_at(self) -> datetime | None:
        """When CallRail answered 401 for this key; None while it may be used. A rejection of
        another key (this document's key was replaced in place since) does not count."""
        if self.invalid_at is None:
            return None
        rejected = self.invalid_fingerprint
        if rejected is not None and rejected != fingerprint(self.api_key.get_secret_value()):
            return None
        return self.invalid_at

    @property
    def usable(self) -> bool:
        return self.rejected_at is None


class KeyStore:
    """Read and replace a DashClicks account's CallRail key, in the spec's collection."""

    def __init__(self, db: Db) -> None:
        self._keys = db[COLLECTION]

    def ensure_indexes(self) -> None:
        self._keys.create_index([("account_id", ASCENDING)])

    def record(self, owner: str) -> ApiKeyRecord | None:
        """The newest key of `owner` that is not soft-deleted (it may be invalid)."""
        doc = self._keys.find_one(
            {"account_id": ObjectId(owner), "deleted": {"$ne": True}},
            sort=[("created_at", DESCENDING)],
        )
        if doc is None:
            return None
        fields = {"record_id": doc["_id"], "owner": owner, "api_key": str(doc["api_key"])}
        return ApiKeyRecord.model_validate({**doc, **fields})

    def usable_key(self, owner: str) -> str | None:
        """The key to call CallRail with, or None when there is none that works."""
        found = self.record(owner)
        return found.api_key.get_secret_value() if found and found.usable else None

    def set(self, owner: str, api_key: str) -> None:
        """Store a new key; earlier keys of the owner are soft-deleted."""
        self.remove(owner)
        self._keys.insert_one(
            {
                "account_id": ObjectId(owner),
                "api_key": api_key,
                "deleted": False,
                "invalid_at": None,
                "created_at": utcnow(),
            }
        )

    def remove(self, owner: str) -> int:
        """Soft-delete the owner's keys; returns how many."""
        result = self._keys.update_many(
            {"account_id": ObjectId(owner), "deleted": {"$ne": True}},
            {"$set": {"deleted": True, "deleted_at": utcnow()}},
        )
        return int(result.modified_count)

    def mark_invalid(self, record: ApiKeyRecord) -> None:
        """CallRail answered 401 for this key: stop using it until the user enters a new one."""
        api_key = record.api_key.get_secret_value()
        # Only while the document still holds that key: one written over it meanwhile is new.
        self._keys.update_one(
            {"_id": record.record_id, "api_key": api_key},
            {"$set": {"invalid_at": utcnow(), "invalid_fingerprint": fingerprint(api_key)}},
        )
