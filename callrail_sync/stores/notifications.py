"""Sync notifications: where an owner wants to hear that a job ended (`callrail_notifications`),
and every attempt to tell them (`callrail_deliveries`).

The signing secret is kept to sign with; the store hands it out only to the code that signs and
to the one answer that shows it (creation, rotation).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr
from pymongo import ASCENDING, DESCENDING, ReturnDocument

from callrail_sync.sealed import Sealer, reseal_documents
from callrail_sync.stores.database import Db, utcnow

CONFIGS = "callrail_notifications"
DELIVERIES = "callrail_deliveries"
EVENTS = ("sync.succeeded", "sync.failed", "webhook.changed")
"""What an owner can be told of: a sync ended either way, or a webhook write succeeded."""
DeliveryStatus = Literal["pending", "delivered", "failed"]
SLACK = timedelta(seconds=1)


def new_secret() -> SecretStr:
    return SecretStr("whsec_" + secrets.token_urlsafe(32))


class NotificationConfig(BaseModel):
    owner: str
    url: str
    events: list[str]
    secret: SecretStr
    previous_secret: SecretStr | None = None
    """The secret before the last rotation, still signed with until `previous_until`."""
    previous_until: datetime | None = None
    created_at: datetime
    updated_at: datetime

    def signing_secrets(self, now: datetime) -> list[str]:
        """What to sign with now: the secret, and the previous one during its grace."""
        found = [self.secret.get_secret_value()]
        if self.previous_secret and self.previous_until and now < self.previous_until:
            found.append(self.previous_secret.get_secret_value())
        return found


class Attempt(BaseModel):
    """One POST of a delivery: what the receiver answered, or why nothing came back."""

    at: datetime
    url: str | None = None
    status_code: int | None = None
    error: str | None = None
    ms: float


class Notification(BaseModel):
    """One announcement of a job's end to the owner's callback, and its attempts."""

    id: str
    event: str
    job_id: str
    body: str
    """The JSON body as sent, byte for byte (the signature covers it)."""
    owner: str
    url: str
    """The callback's URL when the job ended (each attempt goes to the URL set then)."""
    status: DeliveryStatus = "pending"
    attempts: list[Attempt] = Field(default_factory=list)
    created_at: datetime
    give_up_at: datetime
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None


def _notification(doc: dict[str, Any]) -> Notification:
    return Notification.model_validate({**doc, "id": doc["_id"]})


def _config(doc: dict[str, Any] | None, sealer: Sealer) -> NotificationConfig | None:
    if doc is None:
        return None
    fields = {**doc, "owner": doc["_id"], "secret": sealer.open(doc["secret"])}
    if doc.get("previous_secret"):
        fields["previous_secret"] = sealer.open(doc["previous_secret"])
    return NotificationConfig.model_validate(fields)


class NotificationStore:
    """Outbound notification configs and deliveries, in the two collections."""

    def __init__(self, db: Db, sealer: Sealer | None = None) -> None:
        self._sealer = sealer or Sealer()
        self._configs = db[CONFIGS]
        self._deliveries = db[DELIVERIES]

    def ensure_indexes(self) -> None:
        self._deliveries.create_index([("owner", ASCENDING), ("created_at", DESCENDING)])
        self._deliveries.create_index([("status", ASCENDING), ("next_attempt_at", ASCENDING)])

    def config(self, owner: str) -> NotificationConfig | None:
        """The owner's callback, if one is set."""
        return _config(self._configs.find_one({"_id": owner}), self._sealer)

    def configure(self, owner: str, url: str, events: list[str]) -> tuple[NotificationConfig, bool]:
        """Set the callback's URL and events; returns it and whether it is new (then with a
        new secret; an existing callback keeps its secret)."""
        now = utcnow()
        secret = self._sealer.seal(new_secret().get_secret_value())
        before = self._configs.find_one_and_update(
            {"_id": owner},
            {
                "$set": {"url": url, "events": events, "updated_at": now},
                "$setOnInsert": {"secret": secret, "created_at": now},
            },
            upsert=True,
            return_document=ReturnDocument.BEFORE,
        )
        found = self.config(owner)
        if found is None:
            raise RuntimeError("the notification config vanished as it was written")
        return found, before is None

    def rotate(self, owner: str, grace_seconds: float = 0.0) -> NotificationConfig | None:
        """A new secret for the owner's callback (None if there is none); the old one is
        still signed with for `grace_seconds`."""
        current = self._configs.find_one({"_id": owner})
        if current is None:
            return None
        now = utcnow()
        fields = {
            "secret": self._sealer.seal(new_secret().get_secret_value()),
            "previous_secret": self._sealer.reseal(current["secret"]),
            "previous_until": now + timedelta(seconds=grace_seconds),
            "updated_at": now,
        }
        return _config(
            self._configs.find_one_and_update(
                {"_id": owner, "secret": current["secret"]},  # two rotations at once: one wins
                {"$set": fields},
                return_document=ReturnDocument.AFTER,
            ),
            self._sealer,
        )

    def reseal(self) -> int:
        """Every callback's secret and previous secret sealed again with the newest key."""
        return reseal_documents(self._configs, self._sealer, ("secret", "previous_secret"))

    def remove(self, owner: str) -> bool:
        """Drop the owner's callback; pending deliveries are not attempted again."""
        gone = self._configs.delete_one({"_id": owner}).deleted_count > 0
        self._deliveries.update_many(
            {"owner": owner, "status": "pending"},
            {"$set": {"status": "failed", "next_attempt_at": None}},
        )
        return gone

    def new_notification(
        self, owner: str, event: str, job_id: str, url: str, body: str, give_up_at: datetime
    ) -> Notification:
        """Record a delivery to make (one per job and event: the same again answers it)."""
        now = utcnow()
        doc = {
            "owner": owner,
            "event": event,
            "job_id": job_id,
            "url": url,
            "body": body,
            "status": "pending",
            "attempts": [],
            "created_at": now,
            "give_up_at": give_up_at,
            "next_attempt_at": now,
            "delivered_at": None,
        }
        # The id is the job and event: a job that ends twice (a redelivered message) is
        # announced once.
        stored = self._deliveries.find_one_and_update(
            {"_id": f"dlv_{job_id}.{event}"},
            {"$setOnInsert": doc},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        if stored is None:
            raise RuntimeError("the delivery vanished as it was written")
        return _notification(stored)

    def notification(self, delivery_id: str) -> Notification | None:
        doc = self._deliveries.find_one({"_id": delivery_id})
        return _notification(doc) if doc else None

    def claim(self, delivery_id: str, hold: float) -> Notification | None:
        """Take a pending delivery that is due for one attempt, keeping any other message of it
        off for `hold` seconds; None if it is not pending, not due, or taken."""
        now = utcnow()
        doc = self._deliveries.find_one_and_update(
            # A second of slack: a retry's countdown may end a moment before its due time.
            {"_id": delivery_id, "status": "pending", "next_attempt_at": {"$lte": now + SLACK}},
            {"$set": {"next_attempt_at": now + timedelta(seconds=hold)}},
            return_document=ReturnDocument.AFTER,
        )
        return _notification(doc) if doc else None

    def record_attempt(
        self, delivery_id: str, attempt: Attempt, status: DeliveryStatus, due: datetime | None
    ) -> Notification | None:
        """Add an attempt and the delivery's new status."""
        fields: dict[str, Any] = {"status": status, "next_attempt_at": due}
        if status == "delivered":
            fields["delivered_at"] = attempt.at
        doc = self._deliveries.find_one_and_update(
            {"_id": delivery_id, "status": "pending"},
            {"$set": fields, "$push": {"attempts": attempt.model_dump()}},
            return_document=ReturnDocument.AFTER,
        )
        return _notification(doc) if doc else None

    def recent(self, owner: str, limit: int = 50) -> list[Notification]:
        """The owner's deliveries, newest first."""
        docs = self._deliveries.find({"owner": owner}).sort("created_at", DESCENDING).limit(limit)
        return [_notification(d) for d in docs]

    def prune(self, before: datetime) -> int:
        """Forget finished deliveries made before `before`; returns how many."""
        query = {"status": {"$ne": "pending"}, "created_at": {"$lt": before}}
        return int(self._deliveries.delete_many(query).deleted_count)

    def overdue(self, before: datetime, limit: int = 500) -> list[Notification]:
        """Pending deliveries whose next attempt was due before `before` (lost messages)."""
        query = {"status": "pending", "next_attempt_at": {"$lt": before}}
        return [_notification(d) for d in self._deliveries.find(query).limit(limit)]
