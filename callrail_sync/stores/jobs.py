"""Jobs in Mongo (`callrail_jobs`): the only source of truth for job status.

This module is the only place that knows a job document's field names: it turns documents
into `Job` values (`_job`) and writes changes as targeted updates, so two workers touching one
job never overwrite each other's fields.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from callrail_sync.job import (
    ACTIVE_STATUSES,
    Job,
    JobError,
    JobStatus,
    JobType,
    Lane,
    NewJob,
    Progress,
)
from callrail_sync.stores.database import Db, utcnow

COLLECTION = "callrail_jobs"
_ACTIVE = [s.value for s in ACTIVE_STATUSES]
OnChange = Callable[[Job], None]
"""Told every job as it is after each write (the job events are published through it)."""


@dataclass(frozen=True)
class ActiveRow:
    """An active job in brief: its kind, where it stands, and its clocks."""

    type: str
    status: str
    lane: str
    updated_at: datetime
    not_before: datetime | None
    next_retry_at: datetime | None


def _job(doc: dict[str, Any] | None) -> Job | None:
    """The one conversion from a stored document to a `Job`."""
    if doc is None:
        return None
    return Job.model_validate({**doc, "id": doc["_id"]})


def _held(job_id: str, claim: str | None) -> dict[str, Any]:
    """The job, while the attempt holding `claim` runs it (any state of it, without one)."""
    if claim is None:
        return {"_id": job_id}
    return {"_id": job_id, "status": JobStatus.RUNNING.value, "claimed_by": claim}


def _retrying(error: JobError, at: datetime) -> dict[str, Any]:
    """The fields of a job that waits for `at` to try again."""
    return {
        "status": JobStatus.RETRYING.value,
        "error": error.model_dump(mode="json"),
        "next_retry_at": at,
        "updated_at": utcnow(),
    }


def _must(doc: dict[str, Any] | None) -> Job:
    job = _job(doc)
    if job is None:
        raise LookupError("job vanished")
    return job


class JobStore:
    """Create, claim, advance and finish jobs in `callrail_jobs`; every write hands the job as
    it is after it to `on_change`, so nothing that changes a job can forget to announce it."""

    def __init__(self, db: Db, on_change: OnChange | None = None) -> None:
        self._jobs = db[COLLECTION]
        self._on_change = on_change

    def ensure_indexes(self) -> None:
        # Only active jobs carry `active_key`; the unique index makes "one active job per
        # (owner, resource, CallRail account)" an atomic fact instead of a race.
        self._jobs.create_index("active_key", unique=True, sparse=True)
        self._jobs.create_index([("owner", ASCENDING), ("created_at", DESCENDING)])
        self._jobs.create_index([("status", ASCENDING), ("updated_at", ASCENDING)])
        self._jobs.create_index([("status", ASCENDING), ("alive_at", ASCENDING)])
        self._jobs.create_index(
            [("owner", ASCENDING), ("type", ASCENDING), ("created_at", DESCENDING)]
        )

    def create(self, new: NewJob) -> tuple[Job, bool]:
        """Insert a queued job; with a dedupe key, return the active twin instead if one
        exists. Returns (job, created)."""
        now = utcnow()
        doc: dict[str, Any] = {
            "_id": "job_" + secrets.token_urlsafe(18),
            "owner": new.owner,
            "type": new.type.value,
            "params": new.params.model_dump(exclude_none=True),
            "status": JobStatus.QUEUED.value,
            "progress": Progress().model_dump(),
            "result": None,
            "snapshot_id": None,
            "error": None,
            "attempts": 0,
            "next_retry_at": None,
            "not_before": new.not_before,
            "lane": new.lane.value,
            "claimed_by": None,
            "created_at": now,
            "updated_at": now,
            # `started_at` is left out on purpose: `start` sets it with $min, and BSON orders
            # null before every date, so a null would never be replaced.
            "finished_at": None,
        }
        if new.dedupe_key:
            doc["active_key"] = new.dedupe_key
        for _ in range(3):
            try:
                self._jobs.insert_one(doc)
                return self._changed(_must(doc)), True
            except DuplicateKeyError:
                twin = self._jobs.find_one({"active_key": new.dedupe_key})
                if twin is not None:
                    return _must(twin), False
                # The twin finished between our insert and our read: try again.
        raise RuntimeError("could not create or find the job")

    def get(self, job_id: str, owner: str | None = None) -> Job | None:
        """The job, if it exists (and belongs to `owner`, when given)."""
        query: dict[str, Any] = {"_id": job_id}
        if owner is not None:
            query["owner"] = owner
        return _job(self._jobs.find_one(query))

    def active(self, dedupe_key: str) -> Job | None:
        """The queued, running or retrying job holding `dedupe_key`, if any."""
        return _job(self._jobs.find_one({"active_key": dedupe_key})) if dedupe_key else None

    def recent(self, owner: str | None = None, limit: int = 20) -> list[Job]:
        """The newest jobs, of one owner or of all."""
        query = {"owner": owner} if owner else {}
        docs = self._jobs.find(query).sort("created_at", DESCENDING).limit(limit)
        return [_must(doc) for doc in docs]

    def start(self, job_id: str, message_id: str, lease_seconds: float) -> Job | None:
        """A queued or retrying job can be claimed at once. A running job only once its
        process has not beaten for `lease_seconds` (it died: a running job's process beats
        every third of that, whatever its work waits on), so two messages for one job (a
        retry and a restored original, a sweep) never run it twice at the same time.

        The job returned names this attempt's claim (`claimed_by`): the message id and a
        nonce, new at every start (a retried or redelivered message keeps its id). The
        attempt beats and writes its status with it (`claim=`): once another attempt took
        the job over, those writes match nothing and leave the job alone."""
        now = utcnow()
        lease_over = now - timedelta(seconds=lease_seconds)
        running = JobStatus.RUNNING.value
        return self._update(
            {
                "_id": job_id,
                "$or": [
                    {"status": {"$in": [JobStatus.QUEUED.value, JobStatus.RETRYING.value]}},
                    {"status": running, "alive_at": {"$lt": lease_over}},
                    {"status": running, "alive_at": None, "updated_at": {"$lt": lease_over}},
                ],
            },
            {
                "$set": {
                    "status": running,
                    "updated_at": now,
                    "alive_at": now,
                    "next_retry_at": None,
                    "claimed_by": f"{message_id}:{secrets.token_urlsafe(9)}",
                    "not_before": None,
                },
                "$inc": {"attempts": 1},
                "$min": {"started_at": now},
            },
        )

    def beat(self, job_id: str, claim: str) -> bool:
        """The attempt holding `claim` (from `start`) is alive (False: it no longer holds the
        job). Publishes nothing: a heartbeat is not news."""
        found = self._jobs.update_one(_held(job_id, claim), {"$set": {"alive_at": utcnow()}})
        return found.matched_count == 1

    def orphans(self, silent_since: datetime) -> list[Job]:
        """Running jobs whose process has not beaten since `silent_since` (it died)."""
        docs = self._jobs.find(
            {"status": JobStatus.RUNNING.value, "alive_at": {"$lt": silent_since}}
        )
        return [_must(doc) for doc in docs]

    def reclaim_orphan(self, job_id: str, seen_alive_at: datetime | None) -> Job | None:
        """Take an orphan back to `queued`, if its process did not beat since it was seen."""
        queued = {"status": JobStatus.QUEUED.value, "claimed_by": None, "updated_at": utcnow()}
        return self._update(
            {"_id": job_id, "status": JobStatus.RUNNING.value, "alive_at": seen_alive_at},
            {"$set": queued, "$inc": {"sweeps": 1}},
        )

    def record_page(
        self,
        job_id: str,
        number: int,
        total_pages: int | None,
        records: int,
        inserted: int = 0,
    ) -> Job:
        """Note a stored page (once, whatever the redeliveries) and the records it inserted
        into the job's snapshot (what `verify` expects it to hold); returns the job after it."""
        moved = {"progress.total_pages": total_pages, "updated_at": utcnow()}
        counts = {"progress.records": records, "progress.inserted": inserted}
        # One round trip a page: the page is new (the usual case) or noted already (a page
        # written again by a redelivery), when only its total and the time move.
        job = self._update(
            {"_id": job_id, "progress.pages_done": {"$ne": number}},
            {"$push": {"progress.pages_done": number}, "$inc": counts, "$set": moved},
        ) or self._update({"_id": job_id}, {"$set": moved})
        if job is None:
            raise LookupError("job vanished")
        return job

    def retry_later(
        self, job_id: str, error: JobError, at: datetime, claim: str | None = None
    ) -> Job | None:
        """`retrying` until `at`, after a retriable error. With `claim` (here and in the
        other status writes of an attempt), only while that attempt holds the job: None if
        another took it over."""
        return self._update(_held(job_id, claim), {"$set": _retrying(error, at)})

    def park_for_rate_limit(
        self, job_id: str, error: JobError, until: datetime, claim: str | None = None
    ) -> Job | None:
        """`retrying` until `until` for the quota; the attempt is refunded."""
        refund = {"attempts": -1, "rate_limit_waits": 1}
        return self._update(_held(job_id, claim), {"$set": _retrying(error, until), "$inc": refund})

    def requeue(self, job_id: str, claim: str | None = None) -> Job | None:
        """Back to `queued`, unclaimed, the attempt refunded (a stop is not the job's fault)."""
        queued = {"status": JobStatus.QUEUED.value, "claimed_by": None, "updated_at": utcnow()}
        running = {"_id": job_id, "status": JobStatus.RUNNING.value}
        query = _held(job_id, claim) if claim else running
        return self._update(query, {"$set": queued, "$inc": {"attempts": -1}})

    def succeed(
        self,
        job_id: str,
        result: dict[str, Any],
        snapshot_id: str | None,
        claim: str | None = None,
    ) -> Job | None:
        """Final: `succeeded` with its result."""
        done = JobStatus.SUCCEEDED
        fields = {"result": result, "snapshot_id": snapshot_id, "error": None}
        return self._finish(_held(job_id, claim), done, **fields)

    def fail(self, job_id: str, error: JobError, claim: str | None = None) -> Job | None:
        """Final: `failed` with its error; the dedupe slot is freed."""
        error_doc = error.model_dump(mode="json")
        return self._finish(_held(job_id, claim), JobStatus.FAILED, error=error_doc)

    def count_active(self, owner: str, types: Collection[JobType]) -> int:
        """How many of the owner's jobs of these types are queued, running or retrying."""
        return self._jobs.count_documents(
            {"owner": owner, "type": {"$in": [t.value for t in types]}, "status": {"$in": _ACTIVE}}
        )

    def hurry(self, job_id: str) -> bool:
        """Take a queued job's start time back to now; True if it was waiting for later."""
        now = utcnow()
        hurried = self._update(
            {"_id": job_id, "status": JobStatus.QUEUED.value, "not_before": {"$gt": now}},
            # A user waits for it now: its messages take the interactive lane from here on.
            {"$set": {"not_before": None, "lane": Lane.INTERACTIVE.value, "updated_at": now}},
        )
        return hurried is not None

    def latest(
        self,
        owner: str,
        job_type: JobType,
        account: str | None = None,
        stream: str | None = None,
    ) -> Job | None:
        """The owner's newest job of this type (of this CallRail account, for a sync; of this
        stream, for a stream sync)."""
        query: dict[str, Any] = {"owner": owner, "type": job_type.value}
        if account is not None:
            query["params.callrail_account_id"] = account
        if stream is not None:
            query["params.stream"] = stream
        return _job(self._jobs.find_one(query, sort=[("created_at", DESCENDING)]))

    def synced_accounts(self, owner: str) -> list[str]:
        """The CallRail accounts whose companies the owner ever asked to sync."""
        types = [JobType.SYNC_COMPANIES.value, JobType.SYNC_STREAM.value]
        query = {"owner": owner, "type": {"$in": types}}
        return sorted(str(a) for a in self._jobs.distinct("params.callrail_account_id", query))

    def ask_reset(self, job_id: str) -> Job | None:
        """Make an active sync walk from the first page when it next runs."""
        return self._update(
            {"_id": job_id, "status": {"$in": _ACTIVE}},
            {"$set": {"params.reset": True, "updated_at": utcnow()}},
        )

    def restart(self, job_id: str, inserted: int = 0) -> Job | None:
        """Forget a sync's stored progress (its pages are walked again), and in the same write
        what its snapshot should hold: `inserted`, the records it still holds (none, once
        discarded). Never the pages without the count: a retry that skipped pages whose
        records were lost would then find nothing missing."""
        progress = Progress(inserted=inserted).model_dump()
        return self._update(
            {"_id": job_id}, {"$set": {"progress": progress, "updated_at": utcnow()}}
        )

    def active_rows(self, limit: int = 100_000) -> list[ActiveRow]:
        """Every active job, in brief (what the metrics count and time)."""
        fields = ("type", "status", "lane", "updated_at", "not_before", "next_retry_at")
        docs = self._jobs.find({"status": {"$in": _ACTIVE}}, dict.fromkeys(fields, 1))
        return [
            ActiveRow(
                type=str(d.get("type")),
                status=str(d.get("status")),
                lane=str(d.get("lane") or Lane.INTERACTIVE.value),
                updated_at=d["updated_at"],
                not_before=d.get("not_before"),
                next_retry_at=d.get("next_retry_at"),
            )
            for d in docs.limit(limit)
        ]

    def stale(self, older_than: datetime) -> list[Job]:
        """Active jobs untouched since `older_than` (a worker vanished, a message was lost)."""
        now = utcnow()
        docs = self._jobs.find(
            {
                "status": {"$in": _ACTIVE},
                "updated_at": {"$lt": older_than},
                "$or": [{"not_before": None}, {"not_before": {"$lt": now}}],
                "$and": [
                    {"$or": [{"next_retry_at": None}, {"next_retry_at": {"$lt": older_than}}]},
                    # A running job whose process still beats is slow, not lost.
                    {
                        "$or": [
                            {"status": {"$ne": JobStatus.RUNNING.value}},
                            {"alive_at": None},
                            {"alive_at": {"$lt": older_than}},
                        ]
                    },
                ],
            }
        )
        return [_must(doc) for doc in docs]

    def reclaim_stale(self, job_id: str, seen_updated_at: datetime) -> Job | None:
        """Take a stale job back to `queued`, if nothing touched it since it was seen."""
        queued = {"status": JobStatus.QUEUED.value, "claimed_by": None, "updated_at": utcnow()}
        return self._update(
            {"_id": job_id, "updated_at": seen_updated_at, "status": {"$in": _ACTIVE}},
            {"$set": queued, "$inc": {"sweeps": 1}},
        )

    def _finish(self, query: dict[str, Any], status: JobStatus, **fields: Any) -> Job | None:
        now = utcnow()
        final = {"status": status.value, "finished_at": now, "updated_at": now, **fields}
        return self._update(
            query,
            {"$set": {**final, "next_retry_at": None}, "$unset": {"active_key": ""}},
        )

    def _update(self, query: dict[str, Any], update: dict[str, Any]) -> Job | None:
        """The one way a job changes: atomically, then announced."""
        doc = self._jobs.find_one_and_update(query, update, return_document=ReturnDocument.AFTER)
        job = _job(doc)
        return self._changed(job) if job is not None else None

    def _changed(self, job: Job) -> Job:
        if self._on_change is not None:
            self._on_change(job)
        return job
