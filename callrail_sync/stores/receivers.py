"""The companies whose CallRail events we receive (`callrail_receivers`): one document per
company, with the owners who registered our receiver on it, its integration and signing key,
and what its deliveries came to (counted, so an operator sees forged or missed ones).

The signing key is a secret: it is never logged (the log scrubber knows `signing_key`), never
in a response, and `Receiver`'s repr leaves it out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from pymongo import ASCENDING, UpdateOne

from callrail_sync.sealed import Sealer, reseal_documents
from callrail_sync.stores.database import Db, utcnow

COLLECTION = "callrail_receivers"
Counted = Literal["received", "duplicates", "forged", "unreadable", "missed"]


class Receiver(BaseModel):
    company_id: str = Field(alias="_id")
    callrail_account_id: str
    owners: list[str] = Field(default_factory=list)
    seen_by: dict[str, str] = Field(default_factory=dict)
    """Per owner, the fingerprint of the key that last saw the company (registering our
    receiver, or a companies sync listing it): an owner reads the company's calls only while
    its key is still that one (`tasks.inbound.may_read`)."""
    integration_id: str | None = None
    signing_key: str | None = Field(None, repr=False)
    key_fetched_at: datetime | None = None
    state: str = "active"
    """The Webhooks integration's state in CallRail as last seen (`disabled`: no deliveries)."""
    registered_at: datetime | None = None
    reconciled_at: datetime | None = None
    counts: dict[str, int] = Field(default_factory=dict)


class Registration(BaseModel):
    """Our receiver, just put into a company's Webhooks integration."""

    callrail_account_id: str
    company_id: str
    integration_id: str
    signing_key: str | None = Field(None, repr=False)
    state: str = "active"


class ReceiverStore:
    def __init__(self, db: Db, sealer: Sealer | None = None) -> None:
        self._sealer = sealer or Sealer()
        self._receivers = db[COLLECTION]

    def ensure_indexes(self) -> None:
        # Stores made before the rename kept the CallRail account as `account_id`.
        self._receivers.update_many(
            {"account_id": {"$exists": True}}, {"$rename": {"account_id": "callrail_account_id"}}
        )
        self._receivers.create_index([("owners", ASCENDING)])

    def register(
        self, owner: str, registration: Registration, key_fingerprint: str | None = None
    ) -> Receiver:
        """Our receiver is registered on the company (again): keep its integration and key,
        and the owner as a reader (its key, when given, saw the company)."""
        now, company_id = utcnow(), registration.company_id
        fields: dict[str, object] = registration.model_dump(exclude={"company_id", "signing_key"})
        if registration.signing_key:
            sealed = self._sealer.seal(registration.signing_key)
            fields |= {"signing_key": sealed, "key_fetched_at": now}
        if key_fingerprint:
            fields[f"seen_by.{owner}"] = key_fingerprint
        self._receivers.update_one(
            {"_id": company_id},
            {
                "$set": fields,
                "$addToSet": {"owners": owner},
                "$setOnInsert": {"registered_at": now, "counts": {}},
            },
            upsert=True,
        )
        found = self.get(company_id)
        assert found is not None
        return found

    def vouch(self, company_id: str, owner: str, key_fingerprint: str) -> None:
        """The owner's key (this fingerprint) still sees the company."""
        self._receivers.update_one(
            {"_id": company_id, "owners": owner},
            {"$set": {f"seen_by.{owner}": key_fingerprint}},
        )

    def drop_owner(self, company_id: str, owner: str) -> None:
        """The owner's key no longer sees the company: it reads none of its calls."""
        self._receivers.update_one(
            {"_id": company_id},
            {"$pull": {"owners": owner}, "$unset": {f"seen_by.{owner}": ""}},
        )

    def get(self, company_id: str) -> Receiver | None:
        doc = self._receivers.find_one({"_id": company_id})
        return self._receiver(doc) if doc else None

    def reseal(self) -> int:
        """Every receiver's signing key sealed again with the newest key."""
        return reseal_documents(self._receivers, self._sealer, ("signing_key",))

    def set_key(self, company_id: str, signing_key: str) -> None:
        self._receivers.update_one(
            {"_id": company_id},
            {"$set": {"signing_key": self._sealer.seal(signing_key), "key_fetched_at": utcnow()}},
        )

    def seen(self, company_id: str, state: str, reconciled_at: datetime | None = None) -> None:
        """The integration's state as CallRail showed it (and when calls were last checked)."""
        fields: dict[str, object] = {"state": state}
        if reconciled_at is not None:
            fields["reconciled_at"] = reconciled_at
        self._receivers.update_one({"_id": company_id}, {"$set": fields})

    def count(self, company_id: str, what: Counted, n: int = 1) -> None:
        self._receivers.update_one({"_id": company_id}, {"$inc": {f"counts.{what}": n}})

    def count_many(self, counts: dict[str, dict[Counted, int]]) -> None:
        """Add to several companies' counts in one write."""
        updates = [
            UpdateOne({"_id": company}, {"$inc": {f"counts.{k}": n for k, n in by.items()}})
            for company, by in counts.items()
            if by
        ]
        if updates:
            self._receivers.bulk_write(updates, ordered=False)

    def all(self) -> list[Receiver]:
        """Every company with our receiver (beat's reconciliation walks them)."""
        return [self._receiver(d) for d in self._receivers.find({})]

    def of_owner(self, owner: str) -> list[Receiver]:
        return [self._receiver(d) for d in self._receivers.find({"owners": owner})]

    def _receiver(self, doc: dict[str, Any]) -> Receiver:
        key = doc.get("signing_key")
        opened = self._sealer.open(key) if key else key
        return Receiver.model_validate({**doc, "signing_key": opened})
