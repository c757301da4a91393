"""Snapshots of CallRail listings: records as CallRail sent them, published all at once.

`callrail_snapshots` holds each snapshot's metadata; `callrail_snapshot_heads`, per (owner,
kind, CallRail account), names the current one. A sync writes its records under a new snapshot
id, then publishing is one update of the head, so readers see the old snapshot or the new one,
never a mix. Records (`callrail_accounts`, `callrail_companies`) are keyed
`<snapshot>:<id>`, so a redelivered job rewrites the same documents instead of adding
duplicates.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field
from pymongo import ASCENDING, DESCENDING, ReplaceOne, ReturnDocument
from pymongo.errors import BulkWriteError

from callrail_sync.errors import SnapshotIncomplete
from callrail_sync.stores.database import Db, utcnow
from callrail_sync.streams import STREAMS

Kind = Literal["accounts", "companies"]
SNAPSHOTS = "callrail_snapshots"
HEADS = "callrail_snapshot_heads"
ITEM_COLLECTIONS: dict[str, str] = {
    "accounts": "callrail_accounts",
    "companies": "callrail_companies",
}
TIMESTAMPS = ("created_at", "disabled_at")
"""CallRail's timestamps, each stored also as a UTC datetime (`<name>_utc`) to sort by: the
text, offsets and all, does not sort in time (10:07-07:00 is after 11:33-05:00)."""
SORT_KEYS = {"name": "name_lower", **{t: f"{t}_utc" for t in TIMESTAMPS}}
"""The stored field each sort reads (the others sort by their own field)."""
SORTABLE: dict[str, tuple[str, ...]] = {kind: STREAMS[kind].sortable for kind in ITEM_COLLECTIONS}
"""The fields a listing can be sorted by (each has an index, with `id` to break ties)."""
NULLABLE = ("created_at", "disabled_at", "status", "time_zone")
"""Sort fields a record may have no value for (`disabled_at` of an active company). One rule,
the simulator's too: records without a value come last, ascending and descending alike. Each
is stored also as `_null_<field>` (1: no value), which an ascending sort reads first; a
descending sort puts them last by itself (MongoDB orders null below every value)."""


def null_marker(field: str) -> str:
    return f"_null_{field}"


def sort_value(record: dict[str, Any], field: str) -> Any:
    """What a sort by `field` orders a record by (None: it has no value)."""
    if field in TIMESTAMPS:
        return as_utc(record.get(field))
    return record.get(field)


def sort_order(query: PageQuery) -> list[tuple[str, int]]:
    """The MongoDB sort of a page: the field, `id` to break ties, nulls last either way."""
    direction = DESCENDING if query.descending else ASCENDING
    key = SORT_KEYS.get(query.sort, query.sort)
    order = [(key, direction), ("id", direction)]
    if query.sort in NULLABLE and not query.descending:
        order.insert(0, (null_marker(query.sort), ASCENDING))
    return order


class SnapshotHead(BaseModel):
    """The current snapshot of one listing, and what it holds."""

    snapshot_id: str
    owner: str
    kind: Kind
    callrail_account_id: str | None = None
    synced_at: datetime
    counts: dict[str, int] = Field(default_factory=dict)


class PageQuery(BaseModel):
    """One page of a listing as the frontend asks for it (hashable: it keys caches)."""

    model_config = ConfigDict(frozen=True)

    page: int = 1
    per_page: int = 10
    sort: str = "name"
    descending: bool = False
    search: str | None = None
    include_disabled: bool = True


def head_id(owner: str, kind: str, callrail_account_id: str | None) -> str:
    return f"{owner}:{kind}:{callrail_account_id or '-'}"


class SnapshotWriter(Protocol):
    """What a sync needs: build a snapshot page by page, then publish or discard it."""

    def begin(self, snapshot_id: str, owner: str, kind: Kind, account: str | None) -> None:
        """Open (or reopen, on redelivery) a snapshot that readers cannot see yet."""

    def write_records(
        self, kind: Kind, snapshot_id: str, owner: str, records: Iterable[dict[str, Any]]
    ) -> int:
        """Write one page into a building snapshot; returns how many records it inserted (a
        record the snapshot held already is replaced, and not counted again)."""

    def verify(self, kind: Kind, snapshot_id: str, inserted: int) -> int:
        """How many records the snapshot holds, as its readers count them; raises
        `SnapshotIncomplete` if that is fewer than `inserted`, what its pages inserted (the
        store lost some). Reads only: what it expects is the job's to keep (`progress`)."""

    def publish(self, snapshot_id: str, pages: int, held: int | None = None) -> SnapshotHead:
        """Make a complete snapshot current in one step (`held`: its count, from `verify`)."""

    def discard(self, snapshot_id: str) -> None:
        """A failed build: delete its records; the current snapshot is untouched."""


class MongoSnapshotStore:
    """Snapshots in their collections: the `SnapshotWriter` a sync builds them with, and what
    the shim and beat read (the current snapshot of a listing and its pages)."""

    def __init__(self, db: Db) -> None:
        self._db = db
        self._snapshots = db[SNAPSHOTS]
        self._heads = db[HEADS]

    def ensure_indexes(self) -> None:
        self._heads.create_index([("owner", ASCENDING), ("kind", ASCENDING)])
        for kind, name in ITEM_COLLECTIONS.items():
            items = self._db[name]
            for field in SORTABLE[kind]:
                # Every sort ends with `id` as its tie-break, so pages never overlap.
                key = SORT_KEYS.get(field, field)
                fields = [key] if key == "id" else [key, "id"]
                items.create_index([("snapshot_id", ASCENDING), *((f, ASCENDING) for f in fields)])
                if field in NULLABLE:  # the ascending sort: values first, then the nulls
                    marked = [null_marker(field), *fields]
                    items.create_index(
                        [("snapshot_id", ASCENDING), *((f, ASCENDING) for f in marked)]
                    )

    def begin(self, snapshot_id: str, owner: str, kind: Kind, account: str | None) -> None:
        self._snapshots.update_one(
            {"_id": snapshot_id},
            {
                "$setOnInsert": {
                    "owner": owner,
                    "kind": kind,
                    "callrail_account_id": account,
                    "state": "building",
                    "started_at": utcnow(),
                }
            },
            upsert=True,
        )

    def write_records(
        self, kind: Kind, snapshot_id: str, owner: str, records: Iterable[dict[str, Any]]
    ) -> int:
        """Records are inserted (fast); those whose key is already there (a page written again
        after a redelivery, or by another attempt of the same job) are replaced in place."""
        docs = [
            {
                **record,
                "_id": f"{snapshot_id}:{record['id']}",
                "id": str(record["id"]),
                "snapshot_id": snapshot_id,
                "owner": owner,
                "name_lower": str(record.get("name") or "").lower(),
                "_hash": payload_hash(record),
                **{f"{t}_utc": as_utc(record.get(t)) for t in TIMESTAMPS if t in record},
                **{null_marker(f): int(sort_value(record, f) is None) for f in NULLABLE},
            }
            for record in records
        ]
        if not docs:
            return 0
        items = self._db[ITEM_COLLECTIONS[kind]]
        try:
            items.insert_many(docs, ordered=False)
            inserted = len(docs)
        except BulkWriteError as exc:
            failures = exc.details.get("writeErrors", [])
            again = {e["index"] for e in failures if e.get("code") == 11000}
            if len(again) != len(failures):
                raise
            inserted = len(docs) - len(again)
            # Never deleted first: the snapshot may be published already (by the attempt that
            # wrote the page before), and a reader must not find a record of it missing, even
            # for the moment between a delete and an insert, nor after a write that failed.
            again_docs = [docs[i] for i in sorted(again)]
            items.bulk_write(
                [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in again_docs], ordered=False
            )
        # Each record is inserted once in a snapshot's life (a page written again replaces it),
        # so what the pages inserted adds up to its distinct records: what `verify` expects.
        # The sync keeps the sum on its job, in the write that notes the page (no write more).
        return inserted

    def verify(self, kind: Kind, snapshot_id: str, inserted: int) -> int:
        """The count is the readers' (`count` with no search): an insert acknowledged and then
        lost (a store that dropped writes in a restart) shows as fewer than `inserted`. A write
        acknowledged as failed that did land, or a page noted after its records were inserted
        by an attempt that then died, only counts low, never refuses a whole snapshot."""
        held = self.count(kind, snapshot_id, PageQuery())
        if held < inserted:
            raise SnapshotIncomplete(held, inserted)
        return held

    def publish(self, snapshot_id: str, pages: int, held: int | None = None) -> SnapshotHead:
        """Then drop all but it and its predecessor: the predecessor is kept so that a reader
        that read the old head a moment ago still finds its records."""
        meta = self._snapshots.find_one({"_id": snapshot_id})
        if meta is None:
            raise KeyError(snapshot_id)
        kind: Kind = meta["kind"]
        owner, account = meta["owner"], meta.get("callrail_account_id")
        items = self._db[ITEM_COLLECTIONS[kind]]
        if held is None:
            held = items.count_documents({"snapshot_id": snapshot_id})
        counts = {"records": held, "pages": pages}
        if kind == "companies":
            counts["disabled"] = items.count_documents(
                {"snapshot_id": snapshot_id, "status": "disabled"}
            )
        head = SnapshotHead(
            snapshot_id=snapshot_id,
            owner=owner,
            kind=kind,
            callrail_account_id=account,
            synced_at=utcnow(),
            counts=counts,
        )
        self._snapshots.update_one(
            {"_id": snapshot_id},
            {"$set": {"state": "complete", "synced_at": head.synced_at, "counts": counts}},
        )
        previous = self._heads.find_one_and_update(
            {"_id": head_id(owner, kind, account)},
            {"$set": head.model_dump()},
            upsert=True,
            return_document=ReturnDocument.BEFORE,
        )
        keep = {snapshot_id}
        if previous and previous.get("snapshot_id") != snapshot_id:
            keep.add(previous["snapshot_id"])
        self._drop_snapshots_except(owner, kind, account, keep)
        return head

    def discard(self, snapshot_id: str) -> None:
        meta = self._snapshots.find_one({"_id": snapshot_id})
        if meta is None or meta.get("state") == "complete":
            return
        self._db[ITEM_COLLECTIONS[meta["kind"]]].delete_many({"snapshot_id": snapshot_id})
        self._snapshots.delete_one({"_id": snapshot_id})

    def _drop_snapshots_except(
        self, owner: str, kind: Kind, account: str | None, keep: set[str]
    ) -> None:
        query = {
            "owner": owner,
            "kind": kind,
            "callrail_account_id": account,
            "state": "complete",
            "_id": {"$nin": list(keep)},
        }
        stale = [m["_id"] for m in self._snapshots.find(query, {"_id": 1})]
        if stale:
            self._db[ITEM_COLLECTIONS[kind]].delete_many({"snapshot_id": {"$in": stale}})
            self._snapshots.delete_many({"_id": {"$in": stale}})

    def current(self, owner: str, kind: Kind, account: str | None = None) -> SnapshotHead | None:
        """The published snapshot of a listing, if there is one."""
        doc = self._heads.find_one({"_id": head_id(owner, kind, account)})
        return SnapshotHead.model_validate(doc) if doc else None

    def company_counts(self, owner: str, callrail_account_ids: list[str]) -> dict[str, int]:
        """Companies in the current snapshot of each account, where one exists."""
        ids = [head_id(owner, "companies", a) for a in callrail_account_ids]
        heads = self._heads.find({"_id": {"$in": ids}})
        return {h["callrail_account_id"]: h["counts"]["records"] for h in heads}

    def read_page(self, kind: Kind, snapshot_id: str, query: PageQuery) -> list[dict[str, Any]]:
        """One page of a snapshot's records, filtered and sorted."""
        if query.sort not in SORTABLE[kind]:
            raise ValueError(f"cannot sort {kind} by {query.sort}")
        cursor = (
            self._db[ITEM_COLLECTIONS[kind]]
            .find(_filter(kind, snapshot_id, query), HIDDEN)
            .sort(sort_order(query))
            .skip((query.page - 1) * query.per_page)
            .limit(query.per_page)
        )
        return list(cursor)

    def count(self, kind: Kind, snapshot_id: str, query: PageQuery) -> int:
        """How many records the query's filter (search, disabled) leaves."""
        return self._db[ITEM_COLLECTIONS[kind]].count_documents(_filter(kind, snapshot_id, query))

    def has_record(self, kind: Kind, snapshot_id: str, record_id: str) -> bool:
        """Whether the snapshot holds the record with this CallRail id (or numeric id)."""
        query: dict[str, Any] = {"_id": f"{snapshot_id}:{record_id}"}
        if record_id.isascii() and record_id.isdigit():  # also an `ACC…` record's numeric_id
            either = [{"id": record_id}, {"numeric_id": int(record_id)}]
            query = {"snapshot_id": snapshot_id, "$or": either}
        return self._db[ITEM_COLLECTIONS[kind]].find_one(query, {"_id": 1}) is not None


HIDDEN = {
    "_id": 0,
    "snapshot_id": 0,
    "owner": 0,
    "name_lower": 0,
    "_hash": 0,
    **{f"{t}_utc": 0 for t in TIMESTAMPS},
    **{null_marker(f): 0 for f in NULLABLE},
}
"""Fields of a stored record that are ours, not CallRail's: never shown."""


def payload_hash(record: dict[str, Any]) -> str:
    """A hash of a record as CallRail sent it (key order does not matter): what change
    tracking compares to tell an updated record from an unchanged one."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def as_utc(value: Any) -> datetime | None:
    """A CallRail timestamp (ISO 8601 with an offset) as a UTC datetime; None if it is none."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _filter(kind: Kind, snapshot_id: str, query: PageQuery) -> dict[str, Any]:
    match: dict[str, Any] = {"snapshot_id": snapshot_id}
    if query.search:
        # A literal, case-insensitive substring: metacharacters in the search are escaped.
        match["name_lower"] = {"$regex": re.escape(query.search.lower())}
    if kind == "companies" and not query.include_disabled:
        match["status"] = {"$ne": "disabled"}
    return match
