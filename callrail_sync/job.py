"""What a job is: a value that tasks, the shim's presenter and the CLI pass around.

Only the jobs store (`callrail_sync.stores.jobs`) turns Mongo documents into `Job`s and back,
and only it knows their field names; everything else reads these attributes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from callrail_sync.errors import CallRailSyncError, ErrorClass


class JobStatus(StrEnum):
    """Where a job is in its life. The enum is the glossary."""

    QUEUED = "queued"  # waiting for a worker (or for `not_before`)
    RUNNING = "running"  # a worker holds it and touches it at every page
    RETRYING = "retrying"  # a retriable error or the rate limit; next try at `next_retry_at`
    SUCCEEDED = "succeeded"  # done; `result` holds what it produced
    FAILED = "failed"  # done; `error` says why


ACTIVE_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING})
"""A job in one of these still has work ahead; it holds its dedupe slot."""
FINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED})
"""A job in one of these never changes again."""


class JobType(StrEnum):
    """What a job does; each has one Celery task (see `tasks.table`)."""

    SYNC_ACCOUNTS = "sync_accounts"  # every CallRail account of the key, into a snapshot
    SYNC_COMPANIES = "sync_companies"  # every company of one CallRail account, into a snapshot
    WEBHOOK_LIST = "webhook_list"  # the URLs of a company's Webhooks integration
    WEBHOOK_CREATE = "webhook_create"  # add a URL to it (making the integration if needed)
    WEBHOOK_UPDATE = "webhook_update"  # change a URL and/or the integration's state
    CALLS_RECONCILE = "calls_reconcile"  # record the calls CallRail never delivered to us
    RECEIVER_KEY = "receiver_key"  # read a company's signing key again (it did not verify)
    SYNC_STREAM = "sync_stream"  # one stream of one CallRail account (callrail_sync.streams)


class Lane(StrEnum):
    """Which queue a job's messages take: what a user waits for never waits behind beat."""

    INTERACTIVE = "interactive"  # asked for by a user (the shim, the CLI)
    PERIODIC = "periodic"  # planned by beat; served only when no interactive work waits


SYNC_TYPES = frozenset({JobType.SYNC_ACCOUNTS, JobType.SYNC_COMPANIES, JobType.SYNC_STREAM})
WRITE_TYPES = frozenset({JobType.WEBHOOK_CREATE, JobType.WEBHOOK_UPDATE})


class JobParams(BaseModel):
    """What a job was asked to do; which fields are set depends on its type."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    callrail_account_id: str | None = Field(
        default=None, validation_alias=AliasChoices("callrail_account_id", "account_id")
    )
    """The CallRail account of a companies sync or of a webhook job (a job stored before
    the two were one field has it as `account_id`: read the same)."""
    company_id: str | None = None
    webhook_url: str | None = None
    webhook_id: str | None = None
    status: str | None = None
    """`enabled` or `disabled`, for a webhook job."""
    events: list[str] | None = None
    reset: bool | None = None
    """A sync that walks from the first page, whatever an earlier attempt stored."""
    stream: str | None = None
    """The stream of a stream sync (`calls`, `trackers`, ...: `callrail_sync.streams`)."""

    def need(self, name: str) -> str:
        """A field the job's type requires (a missing one is a bug, not a user error)."""
        value = getattr(self, name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"job parameter {name} is missing")
        return value


def listing_sync(kind: str) -> JobType:
    """The job that syncs a listing's snapshot: `accounts`, or `companies`."""
    return JobType.SYNC_ACCOUNTS if kind == "accounts" else JobType.SYNC_COMPANIES


def sync_job(kind: str, callrail_account_id: str | None) -> tuple[JobType, JobParams]:
    """The job that syncs a listing (`accounts`, `companies`) or a stream of an account."""
    if kind in ("accounts", "companies"):
        return listing_sync(kind), JobParams(callrail_account_id=callrail_account_id)
    return JobType.SYNC_STREAM, JobParams(callrail_account_id=callrail_account_id, stream=kind)


class Progress(BaseModel):
    """How far a sync has come: the pages stored so far survive a crash, so a rerun skips
    them."""

    pages_done: list[int] = Field(default_factory=list)
    total_pages: int | None = None
    records: int = 0
    inserted: int = 0
    """Records the pages inserted into the job's snapshot (a page written again inserts none):
    what the snapshot must hold before it is published (`SnapshotWriter.verify`). Kept with
    the pages, so that no write forgets one without the other."""


class JobError(BaseModel):
    """Why a job failed (or what it waits out while `retrying`), in words a frontend can act
    on: what kind of failure (`class`), whether trying again can help, and what to do."""

    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    errno: int
    message: str
    error_class: ErrorClass = Field(ErrorClass.INTERNAL, alias="class")
    retryable: bool = False
    remedy: str | None = None

    @classmethod
    def of(
        cls,
        exc: CallRailSyncError,
        *,
        retry_at: datetime | None = None,
        now: datetime | None = None,
    ) -> JobError:
        """The error a job records for an exception (each type declares its own). While the
        job will try again by itself (`retry_at`), there is nothing for the user to do but
        wait, and the remedy says until when; once it has failed, it is the type's remedy,
        with its times taken from `now`."""
        if retry_at is not None:
            at = retry_at.astimezone(UTC)
            remedy = f"Nothing to do yet: the job tries again by itself at {at:%H:%M:%S} UTC."
        else:
            remedy = exc.remedy_at(now or datetime.now(UTC))
        return cls.model_validate(
            {
                "errno": exc.errno,
                "message": exc.user_message,
                "class": exc.error_class,
                "retryable": exc.retriable,
                "remedy": remedy,
            }
        )


class NewJob(BaseModel):
    """A job about to be created."""

    owner: str
    type: JobType
    params: JobParams = Field(default_factory=JobParams)
    dedupe_key: str | None = None
    """Jobs with the same key share one active job."""
    not_before: datetime | None = None
    lane: Lane = Lane.INTERACTIVE


class Job(BaseModel):
    """One unit of work and everything the frontend may learn about it."""

    id: str
    owner: str
    """The DashClicks account (24 hex) the job belongs to."""
    type: JobType
    params: JobParams = Field(default_factory=JobParams)
    status: JobStatus = JobStatus.QUEUED
    created_at: datetime
    updated_at: datetime
    """Moves at every change: a running sync touches it at every page."""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    alive_at: datetime | None = None
    """When the process running it last said it is alive (every third of JOB_LEASE_SECONDS)."""
    progress: Progress = Field(default_factory=Progress)
    result: dict[str, Any] | None = None
    snapshot_id: str | None = None
    error: JobError | None = None
    attempts: int = 0
    """Runs so far; a rate-limit wait or a hand-back refunds its run."""
    rate_limit_waits: int = 0
    sweeps: int = 0
    """Times the sweeper revived it."""
    next_retry_at: datetime | None = None
    not_before: datetime | None = None
    """Queued by beat for later; a user asking for the same now brings it forward."""
    lane: Lane = Lane.INTERACTIVE
    claimed_by: str | None = None
    """The claim of the attempt running it (`JobStore.start`): internal, never shown."""

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES
