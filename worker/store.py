"""All MongoDB access of callrail-sync. Nothing else imports pymongo.

Collections:
- `integrations.callrail.key` (the spec's): one API key per DashClicks account (`account_id`,
  an ObjectId). A key with `deleted` true or `invalid_at` set is never used.
- `analytics.callrail.userconfig` (the spec's): which CallRail accounts (and companies) each
  DashClicks account has configured; beat syncs these.
- `callrail_jobs`: one document per job, the only source of truth for job status.
- `callrail_snapshots` + `callrail_snapshot_heads`: snapshot metadata, and per (owner, kind,
  CallRail account) a head naming the current snapshot. Publishing a snapshot is one update
  of its head, so readers see the old snapshot or the new one, never a mix.
- `callrail_accounts`, `callrail_companies`: snapshot records, keyed `<snapshot>:<id>` so a
  redelivered job rewrites the same documents instead of adding duplicates.
- `callrail_webhooks`: the webhooks we have seen or made, with our stable `web_…` ids.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from worker.config import Settings

Kind = Literal["accounts", "companies"]
ACTIVE_STATUSES = ("queued", "running", "retrying")
FINAL_STATUSES = ("succeeded", "failed")
KEYS = "integrations.callrail.key"
USERCONFIG = "analytics.callrail.userconfig"
ITEM_COLLECTIONS: dict[str, str] = {
    "accounts": "callrail_accounts",
    "companies": "callrail_companies",
}
SORTABLE: dict[str, set[str]] = {
    "accounts": {"name", "id"},
    "companies": {"name", "id", "created_at", "status", "time_zone", "disabled_at"},
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_object_id(owner: str) -> ObjectId:
    return ObjectId(owner)


def connect(settings: Settings) -> MongoStore:
    """The store for these settings: a real server at MONGO_URL, else an in-process one."""
    if settings.mongo_url:
        from pymongo import MongoClient

        client: Any = MongoClient(settings.mongo_url, tz_aware=True, serverSelectionTimeoutMS=5000)
    else:
        import mongomock_ng as mongomock

        client = mongomock.MongoClient(tz_aware=True)
    store = MongoStore(client[settings.mongo_db])
    store.ensure_indexes()
    return store


class MongoStore:
    """Keys, user config, jobs, snapshots and webhooks, over one pymongo `Database`."""

    def __init__(self, db: Database[Any]) -> None:
        self.db = db
        self.keys = db[KEYS]
        self.userconfig = db[USERCONFIG]
        self.jobs = db["callrail_jobs"]
        self.snapshots = db["callrail_snapshots"]
        self.heads = db["callrail_snapshot_heads"]
        self.webhooks = db["callrail_webhooks"]

    def ensure_indexes(self) -> None:
        """Create every index; safe to call at every start (creation is idempotent)."""
        self.keys.create_index([("account_id", ASCENDING)])
        self.userconfig.create_index([("account_id", ASCENDING)])
        # Only active jobs carry `active_key`; the unique index makes "one active job per
        # (owner, resource, CallRail account)" an atomic fact instead of a race.
        self.jobs.create_index("active_key", unique=True, sparse=True)
        self.jobs.create_index([("owner", ASCENDING), ("created_at", DESCENDING)])
        self.jobs.create_index([("status", ASCENDING), ("updated_at", ASCENDING)])
        self.heads.create_index([("owner", ASCENDING), ("kind", ASCENDING)])
        for name in ITEM_COLLECTIONS.values():
            self.db[name].create_index([("snapshot_id", ASCENDING), ("name_lower", ASCENDING)])
            self.db[name].create_index([("snapshot_id", ASCENDING), ("status", ASCENDING)])
        self.webhooks.create_index(
            [
                ("owner", ASCENDING),
                ("account_id", ASCENDING),
                ("company_id", ASCENDING),
                ("url", ASCENDING),
            ]
        )

    def ping(self) -> bool:
        try:
            self.db.command("ping")
            return True
        except Exception:
            return False

    # --- API keys ------------------------------------------------------------------------

    def api_key_record(self, owner: str) -> dict[str, Any] | None:
        """The newest key record of `owner` that is not soft-deleted (it may be invalid)."""
        return self.keys.find_one(
            {"account_id": as_object_id(owner), "deleted": {"$ne": True}},
            sort=[("created_at", DESCENDING)],
        )

    def usable_api_key(self, owner: str) -> str | None:
        record = self.api_key_record(owner)
        if record is None or record.get("invalid_at") is not None:
            return None
        return str(record["api_key"])

    def set_api_key(self, owner: str, api_key: str) -> None:
        """Store a new key; earlier keys of the owner are soft-deleted."""
        now = utcnow()
        oid = as_object_id(owner)
        self.keys.update_many(
            {"account_id": oid, "deleted": {"$ne": True}},
            {"$set": {"deleted": True, "deleted_at": now}},
        )
        self.keys.insert_one(
            {
                "account_id": oid,
                "api_key": api_key,
                "deleted": False,
                "invalid_at": None,
                "created_at": now,
            }
        )

    def remove_api_key(self, owner: str) -> int:
        result = self.keys.update_many(
            {"account_id": as_object_id(owner), "deleted": {"$ne": True}},
            {"$set": {"deleted": True, "deleted_at": utcnow()}},
        )
        return int(result.modified_count)

    def mark_api_key_invalid(self, record_id: Any) -> None:
        """CallRail answered 401 for this key: stop using it until the user enters a new one."""
        self.keys.update_one({"_id": record_id}, {"$set": {"invalid_at": utcnow()}})

    # --- user config ---------------------------------------------------------------------

    def set_userconfig(self, owner: str, callrail_account_ids: Iterable[str]) -> None:
        self.userconfig.update_one(
            {"account_id": as_object_id(owner)},
            {"$set": {"callrail_account_ids": list(callrail_account_ids), "updated_at": utcnow()}},
            upsert=True,
        )

    def configured_accounts(self) -> Iterator[tuple[str, list[str]]]:
        """(owner, CallRail account ids) for every DashClicks account with a config."""
        for doc in self.userconfig.find({}):
            ids = doc.get("callrail_account_ids") or []
            if doc.get("callrail_account_id"):
                ids = [*ids, doc["callrail_account_id"]]
            yield str(doc["account_id"]), [str(i) for i in dict.fromkeys(ids)]

    # --- jobs ----------------------------------------------------------------------------

    def create_job(
        self,
        owner: str,
        job_type: str,
        params: dict[str, Any],
        dedupe_key: str | None = None,
        not_before: datetime | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Insert a queued job; with `dedupe_key`, return the active twin instead if one exists.

        Returns (job, created).
        """
        now = utcnow()
        job: dict[str, Any] = {
            "_id": "job_" + secrets.token_urlsafe(18),
            "owner": owner,
            "type": job_type,
            "params": params,
            "status": "queued",
            "progress": {"pages_done": [], "total_pages": None, "records": 0},
            "result": None,
            "snapshot_id": None,
            "error": None,
            "attempts": 0,
            "next_retry_at": None,
            "not_before": not_before,
            "claimed_by": None,
            "created_at": now,
            "updated_at": now,
            # `started_at` is left out on purpose: start_job sets it with $min, and BSON
            # orders null before every date, so a null would never be replaced.
            "finished_at": None,
        }
        if dedupe_key:
            job["active_key"] = dedupe_key
        for _ in range(3):
            try:
                self.jobs.insert_one(job)
                return job, True
            except DuplicateKeyError:
                twin = self.jobs.find_one({"active_key": dedupe_key})
                if twin is not None:
                    return twin, False
                # The twin finished between our insert and our read: try again.
        raise RuntimeError("could not create or find the job")

    def get_job(self, job_id: str, owner: str | None = None) -> dict[str, Any] | None:
        query: dict[str, Any] = {"_id": job_id}
        if owner is not None:
            query["owner"] = owner
        return self.jobs.find_one(query)

    def update_job(self, job_id: str, **fields: Any) -> dict[str, Any] | None:
        fields["updated_at"] = utcnow()
        return self.jobs.find_one_and_update(
            {"_id": job_id}, {"$set": fields}, return_document=ReturnDocument.AFTER
        )

    def start_job(
        self, job_id: str, message_id: str, lease_seconds: float = 90.0
    ) -> dict[str, Any] | None:
        """Claim a job for a message, move it to `running` and count the attempt.

        A queued or retrying job can be claimed at once. A running job only once it has not
        moved for `lease_seconds` (its worker died: a sync touches its job at every page), so
        two messages for one job (a retry and a restored original, a sweep) never run it twice
        at the same time. None: not claimable now.
        """
        now = utcnow()
        lease_over = now - timedelta(seconds=lease_seconds)
        return self.jobs.find_one_and_update(
            {
                "_id": job_id,
                "$or": [
                    {"status": {"$in": ["queued", "retrying"]}},
                    {"status": "running", "updated_at": {"$lt": lease_over}},
                ],
            },
            {
                "$set": {
                    "status": "running",
                    "updated_at": now,
                    "next_retry_at": None,
                    "claimed_by": message_id,
                    "not_before": None,
                },
                "$inc": {"attempts": 1},
                "$min": {"started_at": now},
            },
            return_document=ReturnDocument.AFTER,
        )

    def requeue_job(self, job_id: str) -> None:
        """Back to `queued`, unclaimed, the attempt refunded (a stop is not the job's fault)."""
        self.jobs.update_one(
            {"_id": job_id, "status": "running"},
            {
                "$set": {"status": "queued", "claimed_by": None, "updated_at": utcnow()},
                "$inc": {"attempts": -1},
            },
        )

    def park_for_rate_limit(self, job_id: str, error: dict[str, Any], until: datetime) -> None:
        """The job waits for CallRail's quota: `retrying` until `until`, the attempt refunded."""
        self.jobs.update_one(
            {"_id": job_id},
            {
                "$set": {
                    "status": "retrying",
                    "error": error,
                    "next_retry_at": until,
                    "updated_at": utcnow(),
                },
                "$inc": {"attempts": -1, "rate_limit_waits": 1},
            },
        )

    def record_page(self, job_id: str, number: int, total_pages: int | None, records: int) -> None:
        """Note a stored page; a page stored again (after a redelivery) is not counted twice."""
        now = utcnow()
        self.jobs.update_one(
            {"_id": job_id, "progress.pages_done": {"$ne": number}},
            {"$push": {"progress.pages_done": number}, "$inc": {"progress.records": records}},
        )
        self.jobs.update_one(
            {"_id": job_id},
            {"$set": {"progress.total_pages": total_pages, "updated_at": now}},
        )

    def finish_job(
        self, job_id: str, status: Literal["succeeded", "failed"], **fields: Any
    ) -> None:
        now = utcnow()
        self.jobs.update_one(
            {"_id": job_id},
            {
                "$set": {
                    "status": status,
                    "finished_at": now,
                    "updated_at": now,
                    "next_retry_at": None,
                    **fields,
                },
                "$unset": {"active_key": ""},
            },
        )

    def hurry_job(self, job_id: str) -> bool:
        """Take a queued job's start time back to now; True if it was waiting for a later one."""
        result = self.jobs.update_one(
            {"_id": job_id, "status": "queued", "not_before": {"$gt": utcnow()}},
            {"$set": {"not_before": None, "updated_at": utcnow()}},
        )
        return bool(result.modified_count)

    def active_job(self, dedupe_key: str) -> dict[str, Any] | None:
        """The queued, running or retrying job holding `dedupe_key`, if any."""
        return self.jobs.find_one({"active_key": dedupe_key}) if dedupe_key else None

    def recent_jobs(self, owner: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        query = {"owner": owner} if owner else {}
        return list(self.jobs.find(query).sort("created_at", DESCENDING).limit(limit))

    def stale_jobs(self, older_than: datetime) -> list[dict[str, Any]]:
        """Active jobs that have not moved since `older_than`: running ones whose worker
        vanished, and queued or retrying ones whose message was lost."""
        now = utcnow()
        return list(
            self.jobs.find(
                {
                    "status": {"$in": list(ACTIVE_STATUSES)},
                    "updated_at": {"$lt": older_than},
                    "$or": [{"not_before": None}, {"not_before": {"$lt": now}}],
                    "$and": [
                        {"$or": [{"next_retry_at": None}, {"next_retry_at": {"$lt": older_than}}]}
                    ],
                }
            )
        )

    def reclaim_stale(self, job_id: str, seen_updated_at: datetime) -> dict[str, Any] | None:
        """Take a stale job back to `queued` (if nothing touched it since it was seen)."""
        return self.jobs.find_one_and_update(
            {
                "_id": job_id,
                "updated_at": seen_updated_at,
                "status": {"$in": list(ACTIVE_STATUSES)},
            },
            {
                "$set": {"status": "queued", "claimed_by": None, "updated_at": utcnow()},
                "$inc": {"sweeps": 1},
            },
            return_document=ReturnDocument.AFTER,
        )

    # --- snapshots -----------------------------------------------------------------------

    @staticmethod
    def head_id(owner: str, kind: Kind, callrail_account_id: str | None) -> str:
        return f"{owner}:{kind}:{callrail_account_id or '-'}"

    def begin_snapshot(
        self, snapshot_id: str, owner: str, kind: Kind, callrail_account_id: str | None
    ) -> None:
        """Open (or reopen, on redelivery) a snapshot that readers cannot see yet."""
        self.snapshots.update_one(
            {"_id": snapshot_id},
            {
                "$setOnInsert": {
                    "owner": owner,
                    "kind": kind,
                    "callrail_account_id": callrail_account_id,
                    "state": "building",
                    "started_at": utcnow(),
                }
            },
            upsert=True,
        )

    def write_records(
        self, kind: Kind, snapshot_id: str, owner: str, records: Iterable[dict[str, Any]]
    ) -> int:
        """Write one page of records into a building snapshot; returns how many were written.

        Records are inserted (fast on Mongo, and on the in-process store); those whose key is
        already there (a page written again after a redelivery) are replaced.
        """
        docs = []
        for record in records:
            rid = str(record["id"])
            docs.append(
                {
                    **record,
                    "_id": f"{snapshot_id}:{rid}",
                    "id": rid,
                    "snapshot_id": snapshot_id,
                    "owner": owner,
                    "name_lower": str(record.get("name") or "").lower(),
                }
            )
        if not docs:
            return 0
        items = self.db[ITEM_COLLECTIONS[kind]]
        try:
            items.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            again = {
                e["index"] for e in exc.details.get("writeErrors", []) if e.get("code") == 11000
            }
            if len(again) != len(exc.details.get("writeErrors", [])):
                raise
            # The snapshot is not visible yet, so delete-then-insert needs no atomicity.
            redo = [docs[i] for i in sorted(again)]
            items.delete_many({"_id": {"$in": [d["_id"] for d in redo]}})
            items.insert_many(redo, ordered=False)
        return len(docs)

    def publish_snapshot(self, snapshot_id: str, pages: int) -> dict[str, Any]:
        """Make a complete snapshot current in one step, then drop all but it and its predecessor.

        The predecessor is kept so a reader that read the old head a moment ago still finds
        its records.
        """
        meta = self.snapshots.find_one({"_id": snapshot_id})
        if meta is None:
            raise KeyError(snapshot_id)
        kind: Kind = meta["kind"]
        items = self.db[ITEM_COLLECTIONS[kind]]
        counts: dict[str, int] = {
            "records": items.count_documents({"snapshot_id": snapshot_id}),
            "pages": pages,
        }
        if kind == "companies":
            counts["disabled"] = items.count_documents(
                {"snapshot_id": snapshot_id, "status": "disabled"}
            )
        synced_at = utcnow()
        self.snapshots.update_one(
            {"_id": snapshot_id},
            {"$set": {"state": "complete", "synced_at": synced_at, "counts": counts}},
        )
        meta = {**meta, "state": "complete", "synced_at": synced_at, "counts": counts}
        head_id = self.head_id(meta["owner"], kind, meta.get("callrail_account_id"))
        previous = self.heads.find_one_and_update(
            {"_id": head_id},
            {
                "$set": {
                    "owner": meta["owner"],
                    "kind": kind,
                    "callrail_account_id": meta.get("callrail_account_id"),
                    "snapshot_id": snapshot_id,
                    "synced_at": synced_at,
                    "counts": counts,
                }
            },
            upsert=True,
            return_document=ReturnDocument.BEFORE,
        )
        keep = {snapshot_id}
        if previous and previous.get("snapshot_id") != snapshot_id:
            keep.add(previous["snapshot_id"])
            self.heads.update_one(
                {"_id": head_id}, {"$set": {"previous_snapshot_id": previous["snapshot_id"]}}
            )
        self._drop_snapshots_except(meta["owner"], kind, meta.get("callrail_account_id"), keep)
        return meta

    def discard_snapshot(self, snapshot_id: str) -> None:
        """A failed build: delete its records; the current snapshot is untouched."""
        meta = self.snapshots.find_one({"_id": snapshot_id})
        if meta is None or meta.get("state") == "complete":
            return
        self.db[ITEM_COLLECTIONS[meta["kind"]]].delete_many({"snapshot_id": snapshot_id})
        self.snapshots.delete_one({"_id": snapshot_id})

    def _drop_snapshots_except(
        self, owner: str, kind: Kind, callrail_account_id: str | None, keep: set[str]
    ) -> None:
        stale = [
            m["_id"]
            for m in self.snapshots.find(
                {
                    "owner": owner,
                    "kind": kind,
                    "callrail_account_id": callrail_account_id,
                    "state": "complete",
                    "_id": {"$nin": list(keep)},
                },
                {"_id": 1},
            )
        ]
        if stale:
            self.db[ITEM_COLLECTIONS[kind]].delete_many({"snapshot_id": {"$in": stale}})
            self.snapshots.delete_many({"_id": {"$in": stale}})

    def current_snapshot(
        self, owner: str, kind: Kind, callrail_account_id: str | None = None
    ) -> dict[str, Any] | None:
        return self.heads.find_one({"_id": self.head_id(owner, kind, callrail_account_id)})

    def company_counts(self, owner: str, callrail_account_ids: list[str]) -> dict[str, int]:
        """Companies in the current snapshot of each account, where one exists."""
        heads = self.heads.find(
            {"_id": {"$in": [self.head_id(owner, "companies", a) for a in callrail_account_ids]}}
        )
        return {h["callrail_account_id"]: h["counts"]["records"] for h in heads}

    def read_page(
        self,
        kind: Kind,
        snapshot_id: str,
        *,
        page: int,
        per_page: int,
        sort: str = "name",
        descending: bool = False,
        search: str | None = None,
        include_disabled: bool = True,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of a snapshot's records, filtered and sorted, and the filtered total."""
        if sort not in SORTABLE[kind]:
            raise ValueError(f"cannot sort {kind} by {sort}")
        query: dict[str, Any] = {"snapshot_id": snapshot_id}
        if search:
            # A literal, case-insensitive substring: metacharacters in the search are escaped.
            query["name_lower"] = {"$regex": re.escape(search.lower())}
        if kind == "companies" and not include_disabled:
            query["status"] = {"$ne": "disabled"}
        items = self.db[ITEM_COLLECTIONS[kind]]
        total = items.count_documents(query)
        direction = DESCENDING if descending else ASCENDING
        key = "name_lower" if sort == "name" else sort
        cursor = (
            items.find(query, {"_id": 0, "snapshot_id": 0, "owner": 0, "name_lower": 0})
            .sort([(key, direction), ("id", direction)])
            .skip((page - 1) * per_page)
            .limit(per_page)
        )
        return list(cursor), total

    # --- webhooks ------------------------------------------------------------------------

    def remember_webhook(
        self, owner: str, account_id: str, company_id: str, url: str, fields: dict[str, Any]
    ) -> dict[str, Any]:
        """Our record of a webhook (found by owner, account, company and URL), made if new."""
        now = utcnow()
        record: dict[str, Any] = self.webhooks.find_one_and_update(  # type: ignore[assignment]
            {"owner": owner, "account_id": account_id, "company_id": company_id, "url": url},
            {
                "$set": {**fields, "seen_at": now},
                "$setOnInsert": {"_id": "web_" + secrets.token_hex(8), "first_seen_at": now},
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return record

    def get_webhook(self, owner: str, webhook_id: str) -> dict[str, Any] | None:
        return self.webhooks.find_one({"_id": webhook_id, "owner": owner})

    def move_webhook(
        self, owner: str, webhook_id: str, url: str, fields: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Point an existing webhook id at a new URL (an update keeps the id)."""
        return self.webhooks.find_one_and_update(
            {"_id": webhook_id, "owner": owner},
            {"$set": {"url": url, **fields, "seen_at": utcnow()}},
            return_document=ReturnDocument.AFTER,
        )
