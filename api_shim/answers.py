"""The shapes the shim answers with: each route returns one (its `response_model`), and
/openapi.json says what they are."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema, field_serializer

from callrail_sync.job import Job, JobError, JobParams, JobStatus, JobType

PREFIX = "/v1/e/callrail"

Time = Annotated[
    datetime,
    PlainSerializer(datetime.isoformat, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""A time as `isoformat` writes it (`+00:00`, not pydantic's `Z`)."""


class Answer(BaseModel):
    """A shape the shim answers with. Fields it does not document are refused, so an answer
    cannot say more than the document; every field is in every answer."""

    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)


class SnapshotInfo(Answer):
    """Which snapshot a page was read from."""

    synced_at: Time
    stale: bool = Field(description="Older than SNAPSHOT_MAX_AGE; a refresh job is running.")
    refresh_job_id: str | None = Field(description="The job refreshing the snapshot, if any.")


class Page(Answer):
    """The paging of a listing, and the snapshot it was read from."""

    page: int
    per_page: int
    total_pages: int
    total_records: int
    snapshot: SnapshotInfo


class Tracking(Answer):
    """What this service saw of a record across syncs (GET /changes has the whole feed)."""

    first_seen_at: Time
    last_modified_at: Time = Field(description="Moves only when CallRail's payload changed.")
    last_action: Literal["added", "updated", "deleted"]


class CallRailObject(BaseModel):
    """An object as CallRail sent it: the fields below, and any CallRail adds later."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(description="A string, even where CallRail sent an old numeric id.")
    name: str
    tracking: Tracking | None = Field(
        None, description="Ours, not CallRail's: the record's history (null before tracking)."
    )


class Account(CallRailObject):
    """A CallRail account."""

    outbound_recording_enabled: bool | None = None
    hipaa_account: bool | None = None


class Company(CallRailObject):
    """A CallRail company (`status` `disabled` is CallRail's own soft delete)."""

    status: str = Field(examples=["active"])
    time_zone: str | None = None
    created_at: str | None = Field(None, examples=["2018-02-19T13:41:00.236-05:00"])
    disabled_at: str | None = None


class ListedAccount(Account):
    """A CallRail account, as CallRail sent it, with the size of its companies snapshot."""

    companies_count: int | None = Field(
        description="Companies in the account's companies snapshot; null before the first."
    )


class AccountsPage(Page):
    accounts: list[ListedAccount]


class CompaniesPage(Page):
    companies: list[Company]


class JobProgress(Answer):
    """How far a sync has come."""

    pages_done: int
    total_pages: int | None
    records: int


class JobView(Answer):
    """A job: its status, progress, and its result or error."""

    job_id: str
    type: JobType
    status: JobStatus
    params: JobParams
    progress: JobProgress
    result: dict[str, Any] | None = Field(description="What a succeeded job produced.")
    error: JobError | None = Field(description="Why it failed, or what a retrying job waits out.")
    attempts: int
    next_retry_at: Time | None
    created_at: Time
    started_at: Time | None
    finished_at: Time | None
    updated_at: Time

    @field_serializer("params")
    def _set_params_only(self, params: JobParams) -> dict[str, Any]:
        return params.model_dump(mode="json", exclude_none=True)

    @classmethod
    def of(cls, job: Job) -> JobView:
        """The job as `GET /jobs/{id}` shows it: never the owner's key or internal fields."""
        waiting = job.status in (JobStatus.FAILED, JobStatus.RETRYING)
        return cls(
            job_id=job.id,
            type=job.type,
            status=job.status,
            params=job.params,
            progress=JobProgress(
                pages_done=len(job.progress.pages_done),
                total_pages=job.progress.total_pages,
                records=job.progress.records,
            ),
            result=job.result,
            error=job.error if waiting else None,
            attempts=job.attempts,
            next_retry_at=job.next_retry_at,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            updated_at=job.updated_at,
        )


class JobAccepted(Answer):
    """The job that will produce the answer, and where to poll it."""

    job_id: str
    status: JobStatus
    status_url: str = Field(examples=[f"{PREFIX}/jobs/job_3f2a9c0d1e4b5a6f7a8b9c0d"])


class Success(Answer):
    """The envelope of a 200; each route's answer adds its `data`."""

    success: Literal[True] = True
    message: Literal["SUCCESS"] = "SUCCESS"


class AccountsAnswer(Success):
    """A page of the caller's CallRail accounts, from their snapshot."""

    data: AccountsPage


class CompaniesAnswer(Success):
    """A page of the account's companies, from their snapshot."""

    data: CompaniesPage


class JobAnswer(Success):
    """The job."""

    data: JobView


class AcceptedAnswer(Answer):
    """The request became a job: poll `status_url` until it ends."""

    success: Literal[True] = True
    message: Literal["ACCEPTED"] = "ACCEPTED"
    data: JobAccepted


def accepted(job: Job) -> JSONResponse:
    """202: the job that will produce the answer, and where to poll it."""
    data = JobAccepted(job_id=job.id, status=job.status, status_url=f"{PREFIX}/jobs/{job.id}")
    return JSONResponse(AcceptedAnswer(data=data).model_dump(mode="json"), status_code=202)


class StreamTicket(Answer):
    """A ticket for `?ticket=` on the event streams (EventSource sends no headers)."""

    ticket: str
    expires_in: int = Field(description="Seconds it stays good (at most a minute).")


class TicketAnswer(Success):
    """A stream ticket for the caller."""

    data: StreamTicket


class ErrorAnswer(Answer):
    """A refusal or a failure: `errno` repeats the HTTP status."""

    success: Literal[False]
    errno: int
    message: str
