"""What changed in CallRail between syncs: per-record history and the change feed.

`callrail_records` keeps, per listing (owner, kind, CallRail account: a *feed*) and record,
the last payload CallRail sent, a hash of it, `first_seen_at`, `last_modified_at` (moves only
when the hash does), `last_action` (`added`, `updated`, `deleted`), `deleted_at`, and `seq`:
the feed's sequence number of the record's last change. `callrail_feeds` hands out those
numbers (`seq`) and says up to where they are written (`committed`).

`track` compares a complete snapshot with what the feed knows. Only a published, complete walk
is ever tracked, so a record missing from it really is gone from CallRail: it is marked
deleted (never removed), and comes back as `added` if CallRail lists it again.

A reader pages by `seq` and never past `committed`, which moves only after a whole batch of
changes is written (and one feed is tracked by one worker at a time: the task holds a lock),
so a page never skips a change that is written later with a lower number, nor repeats one:
a record that changes again gets a new, higher number, which is a new change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel
from pymongo import ASCENDING, InsertOne, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError

from callrail_sync.stores.database import Db, by_ids, utcnow
from callrail_sync.stores.snapshots import HIDDEN, ITEM_COLLECTIONS, SNAPSHOTS, Kind, head_id

RECORDS = "callrail_records"
FEEDS = "callrail_feeds"
Action = Literal["added", "updated", "deleted"]
ACTIONS: tuple[Action, ...] = ("added", "updated", "deleted")
_BATCH = 500
Beat = Callable[[], None]


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class TrackChecks:
    """What the sync that tracks a snapshot knows and can do beside the store.

    CallRail pages by offset: a record added or removed while a walk runs shifts the pages
    after it, and a record can be missed without being gone. So a record the walk missed is
    marked deleted only if the walk saw as many records as CallRail said the listing holds
    (`expected`) and `confirm_gone` (which asks CallRail about a sample of the missed ones)
    agrees; otherwise a later walk decides.
    """

    expected: int | None = None
    confirm_gone: Callable[[list[str]], bool] | None = None
    heartbeat: Beat = _nothing
    """Runs before each batch of writes: the caller renews, and checks, the lock it holds."""

    def really_gone(self, seen: int, missed: list[str]) -> bool:
        if self.expected is not None and self.expected != seen:
            return False
        return self.confirm_gone is None or self.confirm_gone(missed)


class ChangeCounts(BaseModel):
    """What one sync changed, and how many records its listing holds."""

    added: int = 0
    updated: int = 0
    deleted: int = 0
    total: int = 0


class Change(BaseModel):
    """A record's latest change, as the feed shows it."""

    seq: int
    id: str
    action: Action
    first_seen_at: datetime
    last_modified_at: datetime
    deleted_at: datetime | None = None
    changed_at: datetime
    """When the change happened: `last_modified_at`, or `deleted_at` for a deletion."""
    record: dict[str, Any]


class FeedQuery(BaseModel):
    """One page of a feed: changes numbered after `after`, oldest first."""

    owner: str
    kind: str
    """`accounts`, `companies` or any stream of `callrail_sync.streams`."""
    callrail_account_id: str | None = None
    after: int = 0
    actions: frozenset[Action] = frozenset(ACTIONS)
    modified_after: datetime | None = None
    limit: int = 100

    @property
    def feed(self) -> str:
        return head_id(self.owner, self.kind, self.callrail_account_id)


class ChangePage(BaseModel):
    changes: list[Change]
    has_more: bool
    next_after: int
    """Where the next page starts: the last change's number, or, when nothing more is
    there, the feed's committed number (so filtered-out changes are not scanned again)."""


class Tracker(Protocol):
    def track(self, snapshot_id: str, checks: TrackChecks | None = None) -> ChangeCounts:
        """Compare a complete snapshot with the feed, and record what changed (once: a
        retry of the same snapshot answers the counts of the first run); a record the
        walk missed is marked deleted only as `checks` allow."""


class ChangeStore:
    """Record histories and change feeds, in `callrail_records` and `callrail_feeds`."""

    def __init__(self, db: Db) -> None:
        self._db, self._records, self._feeds = db, db[RECORDS], db[FEEDS]

    def ensure_indexes(self) -> None:
        self._records.create_index([("feed", ASCENDING), ("seq", ASCENDING)], unique=True)

    def track(self, snapshot_id: str, checks: TrackChecks | None = None) -> ChangeCounts:
        meta = self._db[SNAPSHOTS].find_one({"_id": snapshot_id})
        if meta is None:
            raise KeyError(snapshot_id)
        if meta.get("changes"):
            return ChangeCounts.model_validate(meta["changes"])
        kind: Kind = meta["kind"]
        feed = head_id(meta["owner"], kind, meta.get("callrail_account_id"))
        items = self._db[ITEM_COLLECTIONS[kind]]
        seen = {
            d["id"]: d.get("_hash")
            for d in items.find({"snapshot_id": snapshot_id}, {"_id": 0, "id": 1, "_hash": 1})
        }
        fields = {"_id": 0, "id": 1, "hash": 1, "deleted_at": 1}
        known = {d["id"]: d for d in self._records.find({"feed": feed}, fields)}
        live = {i for i, d in known.items() if d.get("deleted_at") is None}
        added = [i for i in seen if i not in live]
        updated = [i for i in seen if i in live and known[i].get("hash") != seen[i]]
        gone = [i for i in live if i not in seen]
        checks = checks or TrackChecks()
        if gone and not checks.really_gone(len(seen), gone):
            gone = []
        counts = ChangeCounts(
            added=len(added), updated=len(updated), deleted=len(gone), total=len(seen)
        )
        planned = meta.get("changes_planned")
        if planned:  # an earlier run of this sync applied part of it, then stopped
            counts = ChangeCounts.model_validate(planned)
        else:
            self._db[SNAPSHOTS].update_one(
                {"_id": snapshot_id}, {"$set": {"changes_planned": counts.model_dump()}}
            )
        if added or updated or gone:
            args = (seen, set(known), added, updated, gone)
            self._apply(feed, meta, snapshot_id, *args, checks.heartbeat)
        self._db[SNAPSHOTS].update_one(
            {"_id": snapshot_id}, {"$set": {"changes": counts.model_dump()}}
        )
        return counts

    def _apply(
        self,
        feed: str,
        meta: dict[str, Any],
        snapshot_id: str,
        seen: dict[str, Any],
        known: set[str],
        added: list[str],
        updated: list[str],
        gone: list[str],
        heartbeat: Beat,
    ) -> None:
        n = len(added) + len(updated) + len(gone)
        counter = self._feeds.find_one_and_update(
            {"_id": feed}, {"$inc": {"seq": n}}, upsert=True, return_document=ReturnDocument.AFTER
        )
        last = int((counter or {})["seq"])
        numbers = iter(range(last - n + 1, last + 1))
        now = utcnow()
        base = {
            "feed": feed,
            "owner": meta["owner"],
            "kind": meta["kind"],
            "callrail_account_id": meta.get("callrail_account_id"),
        }
        is_new = set(added)
        items = self._db[ITEM_COLLECTIONS[meta["kind"]]]
        for batch in _chunks(added + updated):
            heartbeat()
            keys = [f"{snapshot_id}:{i}" for i in batch]
            payloads = {d["id"]: d for d in by_ids(items, keys, HIDDEN)}
            ops: list[InsertOne[dict[str, Any]] | UpdateOne] = []
            inserts: list[dict[str, Any] | None] = []  # each op's inserted document, if any
            for record_id in batch:
                changed = {
                    **base,
                    "id": record_id,
                    "hash": seen[record_id],
                    "record": payloads[record_id],
                    "last_action": "added" if record_id in is_new else "updated",
                    "last_modified_at": now,
                    "deleted_at": None,
                    "changed_at": now,
                    "seq": next(numbers),
                }
                key = f"{feed}:{record_id}"
                if record_id in known:  # updated, or back after a deletion
                    ops.append(UpdateOne({"_id": key}, {"$set": changed}))
                    inserts.append(None)
                else:  # never seen: an insert, far cheaper than an upsert
                    doc = {"_id": key, **changed, "first_seen_at": now}
                    ops.append(InsertOne(doc))
                    inserts.append(doc)
            self._write(ops, inserts)
        deleted = {"last_action": "deleted", "deleted_at": now, "changed_at": now}
        for batch in _chunks(gone):
            heartbeat()
            deletions = [
                UpdateOne(
                    {"_id": f"{feed}:{record_id}"}, {"$set": {**deleted, "seq": next(numbers)}}
                )
                for record_id in batch
            ]
            self._records.bulk_write(deletions, ordered=True)
        # Readers see the batch only now, all of it at once.
        heartbeat()
        self._feeds.update_one({"_id": feed}, {"$max": {"committed": last}})

    def _write(
        self,
        ops: list[InsertOne[dict[str, Any]] | UpdateOne],
        inserts: list[dict[str, Any] | None],
    ) -> None:
        """The batch, in order. A write the server applied but whose answer was lost is sent
        again by the driver (a retryable write); where the server keeps no record of it (one that
        restarted in between: SecantusDB keeps it in memory), our own inserts come back as
        duplicate keys. Those, found stored with the same change number, are left out and the
        rest is sent again; a duplicate of anything else is an error."""
        try:
            self._records.bulk_write(ops, ordered=True)
        except BulkWriteError as exc:
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                raise
            docs = [doc for doc in inserts if doc is not None]
            ids = [doc["_id"] for doc in docs]
            stored = {d["_id"]: d.get("seq") for d in by_ids(self._records, ids, {"seq": 1})}
            ours = {doc["_id"] for doc in docs if stored.get(doc["_id"]) == doc["seq"]}
            if not ours:
                raise
            rest = [
                op
                for op, doc in zip(ops, inserts, strict=True)
                if not doc or doc["_id"] not in ours
            ]
            if rest:
                self._records.bulk_write(rest, ordered=True)

    def read(self, query: FeedQuery) -> ChangePage:
        """One page of a feed."""
        state = self._feeds.find_one({"_id": query.feed}) or {}
        committed = int(state.get("committed", 0))
        match: dict[str, Any] = {"feed": query.feed, "seq": {"$gt": query.after, "$lte": committed}}
        if query.actions != frozenset(ACTIONS):
            match["last_action"] = {"$in": sorted(query.actions)}
        if query.modified_after is not None:
            match["changed_at"] = {"$gt": query.modified_after}
        docs = list(self._records.find(match).sort("seq", ASCENDING).limit(query.limit + 1))
        has_more = len(docs) > query.limit
        changes = [change_of(d) for d in docs[: query.limit]]
        next_after = changes[-1].seq if has_more else max(committed, query.after)
        return ChangePage(changes=changes, has_more=has_more, next_after=next_after)

    def counts(self, owner: str, kind: Kind, account: str | None) -> dict[str, int]:
        """Records the feed knows, by last action."""
        return count_actions(self._records, {"feed": head_id(owner, kind, account)})

    def tracking(
        self, owner: str, kind: Kind, account: str | None, ids: list[str]
    ) -> dict[str, dict[str, Any]]:
        """The history of these records (`first_seen_at`, `last_modified_at`, `last_action`),
        by id, for the listing that shows them."""
        feed = head_id(owner, kind, account)
        fields = {"_id": 0, "id": 1, "first_seen_at": 1, "last_modified_at": 1, "last_action": 1}
        docs = by_ids(self._records, [f"{feed}:{i}" for i in ids], fields)
        return {d["id"]: history(d) for d in docs}


def count_actions(records: Any, match: dict[str, Any]) -> dict[str, int]:
    """The records `match` finds, by last action (every action, 0 where none)."""
    grouped = records.aggregate(
        [{"$match": match}, {"$group": {"_id": "$last_action", "n": {"$sum": 1}}}]
    )
    found = {str(g["_id"]): int(g["n"]) for g in grouped}
    return {action: found.get(action, 0) for action in ACTIONS}


def history(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored record's history as callers see it (`tracking`), of either store."""
    return {
        "first_seen_at": doc["first_seen_at"].isoformat(),
        "last_modified_at": doc["last_modified_at"].isoformat(),
        "last_action": doc["last_action"],
    }


def change_of(doc: dict[str, Any]) -> Change:
    """A stored record's latest change (a snapshot's record or a stream's: one shape)."""
    return Change.model_validate(
        {**doc, "action": doc["last_action"], "record": doc.get("record") or {}}
    )


def _chunks(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), _BATCH):
        yield ids[start : start + _BATCH]
