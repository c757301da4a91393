"""CallRail's deliveries as they arrived (`callrail_inbox`) and the call and form events made of
them (`callrail_call_events`).

The receiver writes a verified delivery to the inbox before it answers: the raw bytes, under
the delivery's dedupe key, so the same delivery sent twice is kept once. A task then turns it
into an event. Reconciliation adds the calls CallRail listed but never delivered, under the
key their post-call delivery would have had: if that delivery comes late after all, it is the
same event (noted, not stored twice).

Events are numbered (`seq`) as they are stored; listings read them newest first by number, so
a cursor names a place that events stored later never move.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from bson.binary import Binary
from pydantic import AliasChoices, BaseModel, Field
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import BulkWriteError, OperationFailure
from pymongo.write_concern import WriteConcern

from callrail_sync.stores.database import Db, utcnow

INBOX = "callrail_inbox"
EVENTS = "callrail_call_events"
COUNTERS = "callrail_counters"
STORED_ACCOUNT = "account_id"
"""The events' stored field for their CallRail account (`callrail_account_id` in our code)."""
Source = Literal["webhook", "reconciled"]


def as_utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


class InboxEntry(BaseModel):
    id: str = Field(alias="_id")
    company_id: str
    raw: bytes = Field(repr=False)
    event: str | None = None
    """The event its URL named, or the receiver's reading of it."""
    received_at: datetime
    state: str = "pending"
    """`pending` until normalized, then `done`; `unreadable`: signed, but not a JSON object."""


class NewCallEvent(BaseModel):
    id: str
    owners: list[str]
    callrail_account_id: str = Field(
        validation_alias=AliasChoices("callrail_account_id", STORED_ACCOUNT),
        serialization_alias=STORED_ACCOUNT,
    )
    """Stored as `account_id` (the name CallRail gives it), as before this field was renamed:
    the events need no migration."""
    company_id: str
    kind: Literal["call", "form"]
    event: str
    resource_id: str
    source: Source
    received_at: datetime
    start_time: datetime | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    changes: list[Any] = Field(default_factory=list)

    def view(self) -> dict[str, Any]:
        """The event as the frontend sees it (`GET /calls`, the event stream)."""
        return {
            "id": self.id,
            "event": self.event,
            "call_id": self.resource_id,
            "account_id": self.callrail_account_id,
            "company_id": self.company_id,
            "source": self.source,
            "received_at": self.received_at.isoformat(),
            "start_time": self.start_time.isoformat() if self.start_time else None,
            "call": self.fields,
            "changes": self.changes,
        }


class CallEvent(NewCallEvent):
    seq: int
    webhook_at: datetime | None = None
    """When a delivery brought it (for a reconciled event: a delivery that came late)."""


class Sighting(NamedTuple):
    """A call as CallRail's calls API lists it: its id, start and caller."""

    call_id: str
    start: datetime | None
    phone: str | None


class Recorded(NamedTuple):
    """What `record` did: the events it stored, and all of them that are stored now."""

    stored: list[str]
    present: set[str]


class Kept(NamedTuple):
    """A verified delivery, as the receiver keeps it."""

    key: str
    company_id: str
    raw: bytes
    event: str


class CallsQuery(BaseModel):
    """Which call events to read: an owner's, of one CallRail account (and company), received
    since a time, numbered below `before` (the cursor), at most `limit`."""

    owner: str
    callrail_account_id: str
    company_id: str | None = None
    readable: list[str] | None = None
    """Only these companies (those the owner's key sees now); None: no such filter."""
    since: datetime | None = None
    before: int | None = None
    limit: int = 100


def _ttl(collection: Any, field: str, seconds: int) -> None:
    """A TTL index on `field` removing documents `seconds` after it; a changed retention
    is applied to the existing index (collMod)."""
    name = f"ttl_{field}"
    try:
        collection.create_index(field, name=name, expireAfterSeconds=seconds)
    except OperationFailure:
        collection.database.command(
            "collMod",
            collection.name,
            index={"name": name, "expireAfterSeconds": seconds},
        )


def _body_hash(company_id: str, raw: bytes) -> str:
    """A delivery's bytes, for its company: the same signed bytes are one delivery, whatever
    event the (unsigned) URL it was posted to names."""
    return hashlib.sha256(company_id.encode() + b"\0" + raw).hexdigest()


class InboxStore:
    def __init__(self, db: Db, inbox_days: float = 30.0, events_days: float = 760.0) -> None:
        self._keep_inbox = int(inbox_days * 86400)
        self._keep_events = int(events_days * 86400)
        # A 2xx to CallRail says the delivery is kept, and CallRail never sends it again: the
        # insert is acknowledged only once it is journaled (and on a majority, in a replica set).
        self._inbox = db.get_collection(INBOX, write_concern=WriteConcern(w="majority", j=True))
        self._events = db[EVENTS]
        self._counters = db[COUNTERS]

    def ensure_indexes(self) -> None:
        self._inbox.create_index([("state", ASCENDING), ("received_at", ASCENDING)])
        # Retention: MongoDB removes entries and events older than these (TTL indexes).
        _ttl(self._inbox, "received_at", self._keep_inbox)
        _ttl(self._events, "received_at", self._keep_events)
        # The same signed bytes are kept once, whatever event key the URL made of them.
        self._inbox.create_index("body_sha", unique=True, sparse=True)
        self._events.create_index([("seq", DESCENDING)], unique=True)
        self._events.create_index(
            [("owners", ASCENDING), (STORED_ACCOUNT, ASCENDING), ("seq", DESCENDING)]
        )
        self._events.create_index(
            [("company_id", ASCENDING), ("event", ASCENDING), ("resource_id", ASCENDING)]
        )

    def accept_many(self, deliveries: list[Kept], state: str = "pending") -> list[bool]:
        """Keep verified deliveries in one write; for each, whether it is new (False: kept
        before, or earlier in this list). `unreadable` ones are kept, never normalized."""
        if not deliveries:
            return []
        now = utcnow()
        docs = [
            {
                "_id": d.key,
                "company_id": d.company_id,
                "raw": Binary(d.raw),
                "body_sha": _body_hash(d.company_id, d.raw),
                "event": d.event,
                "received_at": now,
                "state": state,
            }
            for d in deliveries
        ]
        fresh = [True] * len(docs)
        try:
            self._inbox.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            for error in exc.details.get("writeErrors", []):
                if error.get("code") != 11000:
                    raise  # not a duplicate: nothing may be answered as kept
                fresh[int(error["index"])] = False
        return fresh

    def entries(self, keys: list[str]) -> list[InboxEntry]:
        """Those of these deliveries not normalized yet."""
        found = self._inbox.find({"_id": {"$in": keys}, "state": "pending"})
        return [InboxEntry.model_validate(d) for d in found]

    def finish(self, keys: list[str]) -> None:
        self._inbox.update_many(
            {"_id": {"$in": keys}, "state": "pending"},
            {"$set": {"state": "done", "done_at": utcnow()}},
        )

    def pending(self, received_before: datetime, limit: int = 500) -> list[str]:
        """Deliveries not normalized yet, received before then (their task was lost)."""
        found = self._inbox.find(
            {"state": "pending", "received_at": {"$lt": received_before}}, {"_id": 1}
        ).limit(limit)
        return [str(d["_id"]) for d in found]

    def record(self, events: list[NewCallEvent]) -> Recorded:
        """Store events (numbered in this order): those stored now, and those stored at all
        (also before, or by a copy meanwhile). For one that was there, a webhook's copy notes
        that its delivery came."""
        ids = [e.id for e in events]
        there = {d["_id"] for d in self._events.find({"_id": {"$in": ids}}, {"_id": 1})}
        waiting = [e for e in events if e.id not in there]
        stored: list[str] = []
        present = set(there)
        for _ in range(5):  # a number two writers were both given is given again
            if not waiting:
                break
            docs = self._numbered(waiting)
            clashed: set[int] = set()
            try:
                self._events.insert_many(docs, ordered=False)
            except BulkWriteError as exc:
                for error in exc.details.get("writeErrors", []):
                    if error.get("code") != 11000:
                        raise
                    if "seq" in (error.get("keyPattern") or {}) or "seq" in error.get("errmsg", ""):
                        clashed.add(int(error["index"]))  # numbered again below
                    else:
                        clashed.add(-1 - int(error["index"]))  # stored meanwhile by a copy
                        present.add(docs[int(error["index"])]["_id"])
            stored += [
                d["_id"] for n, d in enumerate(docs) if n not in clashed and -1 - n not in clashed
            ]
            waiting = [e for n, e in enumerate(waiting) if n in clashed]
        for late in (e for e in events if e.source == "webhook" and e.id not in stored):
            # A delivery after reconciliation recorded its call: CallRail's own payload wins.
            self._events.update_one(
                {"_id": late.id, "webhook_at": None},
                {"$set": {"webhook_at": utcnow(), "fields": late.fields}},
            )
        return Recorded(stored, present | set(stored))

    def _numbered(self, events: list[NewCallEvent]) -> list[dict[str, Any]]:
        last, now = self._numbers(len(events)), utcnow()
        docs = []
        for number, event in enumerate(events, start=last - len(events) + 1):
            doc = event.model_dump(by_alias=True)
            doc["_id"], doc["seq"], doc["stored_at"] = doc.pop("id"), number, now
            doc["webhook_at"] = event.received_at if event.source == "webhook" else None
            docs.append(doc)
        return docs

    def _numbers(self, n: int) -> int:
        """Reserve `n` event numbers; the last of them."""
        for _ in range(5):
            counter = self._counters.find_one_and_update(
                {"_id": EVENTS},
                {"$inc": {"seq": n}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
            if counter is not None:
                return int(counter["seq"])
        raise RuntimeError("could not number the events")

    def known(self, company_id: str, event: str, calls: list[Sighting]) -> set[str]:
        """Which of these calls already have this event: by id, or (a delivery may carry only
        a call's old numeric id, the API its `CAL…` id) by start time and caller together."""
        ids = [c.call_id for c in calls]
        starts = [c.start for c in calls if c.start is not None]
        either = [{"resource_id": {"$in": ids}}, {"start_time": {"$in": starts}}]
        found = self._events.find(
            {"company_id": company_id, "event": event, "$or": either},
            {"resource_id": 1, "start_time": 1, "fields.customer_phone_number": 1},
        )
        have_ids, have_callers = set(), set()
        for doc in found:
            have_ids.add(str(doc["resource_id"]))
            phone = (doc.get("fields") or {}).get("customer_phone_number")
            if doc.get("start_time") is not None and phone:
                have_callers.add((as_utc(doc["start_time"]), phone))
        # Two calls of one company can start in the same second: the caller must match too.
        return {
            c.call_id
            for c in calls
            if c.call_id in have_ids
            or (c.start is not None and (as_utc(c.start), c.phone) in have_callers)
        }

    def read(self, query: CallsQuery) -> tuple[list[CallEvent], bool]:
        """Call events of the owner's companies, newest first; and whether more follow."""
        found: dict[str, Any] = {"owners": query.owner, STORED_ACCOUNT: query.callrail_account_id}
        found["kind"] = "call"
        if query.company_id:
            found["company_id"] = query.company_id
        if query.readable is not None:
            allowed = [c for c in query.readable if not query.company_id or c == query.company_id]
            found["company_id"] = {"$in": allowed}
        if query.since is not None:
            found["stored_at"] = {"$gte": query.since}
        if query.before is not None:
            found["seq"] = {"$lt": query.before}
        limit = query.limit
        docs = list(self._events.find(found).sort("seq", DESCENDING).limit(limit + 1))
        events = [CallEvent.model_validate({**d, "id": d["_id"]}) for d in docs[:limit]]
        return events, len(docs) > limit
