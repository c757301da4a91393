"""Every exception type of callrail-sync, under one root.

Each type carries, as class attributes, everything the two places that handle errors need, so
neither has to guess: the shim answers with `errno` (the HTTP status, and the envelope's errno)
and `user_message`, and the tasks retry when `retriable` and fail otherwise (`RateLimited` waits
without spending an attempt; `StopRequested` hands the job back). `error_class`, `retriable`
and `remedy` are what a failed job tells the frontend: every type has a remedy, written to be
shown as it is. A remedy may name times, `{failed_at}` and `{retry_after}`, filled in when the
job fails (`remedy_at`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum

API_KEY_NOT_FOUND = "API key not found. Please add your CallRail API key first."

RETRY_LATER = timedelta(minutes=5)
"""How long after a failure on CallRail's side (or ours) a remedy says to try again."""
TRY_AGAIN = "Try again in a few minutes, after {retry_after}."
TRY_THEN_REPORT = TRY_AGAIN + " If it happens again, report the job id to support."


class ErrorClass(StrEnum):
    """What kind of failure an error is, in words a frontend can branch on."""

    AUTH = "auth"  # the CallRail key (or our token) is missing, wrong or revoked
    PERMISSION = "permission"  # the key is valid but may not do this
    NOT_FOUND = "not_found"  # the account, company, webhook or job does not exist
    INVALID = "invalid"  # the request's content was refused
    RATE_LIMITED = "rate_limited"  # a quota is spent; trying later helps
    UPSTREAM = "upstream"  # CallRail failed or could not be reached
    INTERNAL = "internal"  # ours: a bug, a crash, or MongoDB/Redis down (then retryable)


class CallRailSyncError(Exception):
    """Base of every error this project raises on purpose."""

    errno = 500
    """The HTTP status the shim answers with (and a failed job's `errno`)."""
    error_class = ErrorClass.INTERNAL
    retriable = False
    """Whether running the job again can help (the tasks retry these with backoff)."""
    template = "{message}"
    """How the message reads to the dashboard user."""
    remedy: str = "Something went wrong on our side, not yours. " + TRY_THEN_REPORT
    """What the user can do about it, in words the frontend shows as they are."""

    def __init_subclass__(
        cls,
        *,
        errno: int | None = None,
        kind: ErrorClass | None = None,
        retriable: bool | None = None,
        **rest: object,
    ) -> None:
        """Subclasses set their status, class and retry decision in their header."""
        super().__init_subclass__(**rest)
        if errno is not None:
            cls.errno = errno
        if kind is not None:
            cls.error_class = kind
        if retriable is not None:
            cls.retriable = retriable

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def user_message(self) -> str:
        return self.template.format(message=self.message)

    def remedy_at(self, now: datetime) -> str:
        """The remedy with its times filled in: `{failed_at}` is `now`, `{retry_after}` a few
        minutes later (UTC, to the minute)."""
        at = now.astimezone(UTC)
        return self.remedy.replace("{failed_at}", f"{at:%H:%M} UTC").replace(
            "{retry_after}", f"{at + RETRY_LATER:%H:%M} UTC"
        )


# --- a request refused by the shim (nothing was queued) ---------------------------------------


class ValidationFailed(CallRailSyncError, errno=400, kind=ErrorClass.INVALID):
    """Raised when our own input checks refuse a request before any work is queued."""

    remedy = "Correct what the message names, then send the request again."


class ApiKeyNotFound(CallRailSyncError, errno=400, kind=ErrorClass.AUTH):
    """Raised when the DashClicks account has no usable (present, not soft-deleted, not
    revoked) CallRail key."""

    remedy = "Add a CallRail API key for this account."

    def __init__(self) -> None:
        super().__init__(API_KEY_NOT_FOUND)


class ApiKeyRejected(CallRailSyncError, errno=400, kind=ErrorClass.AUTH):
    """Raised when the account's CallRail key is one CallRail answered 401 for: no request is
    spent on it again (no job is started) until a new key is stored."""

    remedy = (
        "Enter a new CallRail API key for this account: CallRail no longer accepts the current "
        "one (it was revoked, or mistyped). Syncs start again as soon as the new key is saved."
    )

    def __init__(self, rejected_at: datetime) -> None:
        at = rejected_at if rejected_at.tzinfo else rejected_at.replace(tzinfo=UTC)
        super().__init__(
            f"CallRail rejected this account's API key on {at.astimezone(UTC):%Y-%m-%d at %H:%M} "
            "UTC. Please enter a new CallRail API key."
        )
        self.rejected_at = at


class Unauthenticated(CallRailSyncError, errno=401, kind=ErrorClass.AUTH):
    """Raised when the dashboard's bearer token is missing, malformed, forged or expired."""

    remedy = "Sign in to the dashboard again: the session is missing or has expired."


class NotFound(CallRailSyncError, errno=404, kind=ErrorClass.NOT_FOUND):
    """Raised when a job, webhook or route does not exist for this owner."""

    remedy = "Check the id: it does not exist for this account. List again to get current ids."


class WebhookNotFound(NotFound):
    """Raised when a webhook id is not ours, or its URL is no longer in the company's
    integration in CallRail (someone removed it there)."""

    remedy = (
        "List the company's webhooks again and use an id from that list: this webhook is no "
        "longer configured in CallRail (it may have been removed there). To have it back, "
        "create it again."
    )

    def __init__(self, message: str = "Webhook not found.") -> None:
        super().__init__(message)


class SyncPaused(CallRailSyncError, errno=409, kind=ErrorClass.INVALID):
    """Raised when a sync is asked for a CallRail account whose syncs are paused."""

    remedy = 'Resume the account\'s syncs with PUT /schedule {"paused": false}.'

    def __init__(self) -> None:
        super().__init__(
            "Syncing is paused for this CallRail account; resume it with PUT /schedule first."
        )


class TooManyRequests(CallRailSyncError, errno=429, kind=ErrorClass.RATE_LIMITED, retriable=True):
    """Raised when an owner asks for more work than admission allows (active write jobs, or
    submissions a minute); `retry_after` says when to ask again."""

    remedy = "Wait a little (the answer's Retry-After header says how long), then ask again."

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class JobTimedOut(CallRailSyncError, errno=504):
    """Raised when a job runs past Celery's soft time limit (something is stuck)."""

    remedy = (
        "The job was stopped at {failed_at} after running too long (CallRail may have been very "
        "slow). " + TRY_THEN_REPORT
    )

    def __init__(self) -> None:
        super().__init__("The job took too long and was stopped.")


class WorkerLost(CallRailSyncError):
    """Raised (by the sweeper) when a job's worker keeps vanishing under it."""

    remedy = (
        "Our workers kept stopping while running this job (a problem on our side, not yours). "
        + TRY_THEN_REPORT
    )

    def __init__(self) -> None:
        super().__init__("The worker running this job stopped, and it was tried too many times.")


class Crashed(CallRailSyncError):
    """Raised for an error of ours that has no type: a bug."""

    remedy = "This is a bug on our side, not yours. " + TRY_THEN_REPORT

    def __init__(self) -> None:
        super().__init__("Internal error while running the job.")


# --- our own services ------------------------------------------------------------------------


class ServiceUnavailable(CallRailSyncError, errno=503, kind=ErrorClass.INTERNAL, retriable=True):
    """Raised when Mongo or the broker cannot be reached; trying again shortly helps."""

    remedy = (
        "Our database or job queue was unavailable at {failed_at} (on our side, not yours). "
        + TRY_AGAIN
    )


class LockBusy(ServiceUnavailable):
    """Raised when another worker holds the lock on a company's webhooks past the wait, or a
    holder finds its lock ran out: the job retries from a fresh read of CallRail."""

    remedy = (
        "Another change to this company's webhooks was under way. List the company's webhooks "
        "to see where they stand, then try again if your change is not there."
    )


class SnapshotIncomplete(ServiceUnavailable):
    """Raised before publishing when the collection holds fewer of a snapshot's records than
    its pages inserted (the store lost writes): nothing is published, the job walks every page
    again (which pages lost records is not known)."""

    remedy = (
        "Our database lost part of this sync's records at {failed_at} (on our side, not yours), "
        "so nothing of it was shown. " + TRY_THEN_REPORT
    )

    def __init__(self, held: int, inserted: int) -> None:
        super().__init__(
            f"The snapshot holds {held} records where its pages inserted {inserted}; "
            "the sync walks its pages again."
        )
        self.held, self.inserted = held, inserted


class QueueUnavailable(ServiceUnavailable):
    """Raised when the broker refuses a job's message; the job was failed, nothing will run."""

    remedy = "Our job queue refused the job at {failed_at}, so nothing ran. " + TRY_AGAIN


class StopRequested(CallRailSyncError, retriable=True):
    """Raised between two pages when the worker is shutting down: the job goes back to the
    queue and the next worker resumes it (not a failure)."""

    remedy = "Nothing to do: the job was handed to another worker and goes on by itself."


# --- CallRail ---------------------------------------------------------------------------------


class CallRailError(CallRailSyncError, errno=502, kind=ErrorClass.UPSTREAM):
    """Raised when CallRail answers with an error status, or cannot be reached."""

    template = "CallRail error: {message}"
    remedy = (
        "CallRail was failing at {failed_at}: the problem is on CallRail's side, and the job "
        "gave up after trying several times. " + TRY_AGAIN
    )

    def __init__(self, message: str, *, status: int | None = None, path: str = "") -> None:
        super().__init__(message)
        self.status = status
        """CallRail's own HTTP status (None: no answer came back)."""
        self.path = path
        """The path of the request that failed (what a 429 is charged to depends on it)."""


class Unauthorized(CallRailError, errno=401, kind=ErrorClass.AUTH):
    """Raised on a 401: the API key is wrong or was revoked. Retrying cannot help."""

    template = "CallRail rejected the API key. Please re-enter your CallRail API key."
    remedy = "Enter a valid CallRail API key; the current one was rejected or revoked."


class Forbidden(CallRailError, errno=403, kind=ErrorClass.PERMISSION):
    """Raised on a 403: the key is valid but lacks a permission."""

    template = "CallRail denied access: {message}"
    remedy = "Use a CallRail API key of a user with the permission this needs."


class IntegrationForbidden(Forbidden):
    """Raised on a 403 to a write of a company's integrations (webhooks)."""

    remedy = (
        "The CallRail API key needs the Integration Admin permission to manage webhooks; "
        "ask a CallRail admin to grant it, or enter the key of a user who has it."
    )


class UpstreamNotFound(CallRailError, errno=404, kind=ErrorClass.NOT_FOUND):
    """Raised on a 404: the account, company or integration does not exist for this key."""

    template = "Not found in CallRail: {message}"
    remedy = "Check that the account and company ids belong to this CallRail key."


class InvalidRequest(CallRailError, errno=400, kind=ErrorClass.INVALID):
    """Raised on a 400, 422 or other 4xx: CallRail refused the request's content."""

    template = "CallRail refused the request: {message}"
    remedy = (
        "CallRail refused a value of this request (the message says which): correct it, then "
        "try again."
    )


class RateLimited(CallRailError, errno=429, kind=ErrorClass.RATE_LIMITED, retriable=True):
    """Raised on a 429: the account's hourly or daily quota is spent. `retry_after` is
    seconds, when CallRail sent it."""

    template = "CallRail rate limit reached; the job will retry."
    remedy = "Nothing to do: the job waits for CallRail's hourly quota and continues by itself."

    def __init__(self, message: str, *, retry_after: float | None = None, path: str = "") -> None:
        super().__init__(message, status=429, path=path)
        self.retry_after = retry_after


class RateLimitExhausted(RateLimited, retriable=False):
    """Raised when a job has waited for the quota more times than MAX_RATE_LIMIT_WAITS."""

    template = "{message}"
    remedy = (
        "Something else spends this CallRail account's quota (1,000 requests an hour); "
        "try again later, or find the other application using it."
    )

    def __init__(self) -> None:
        super().__init__(
            "CallRail's rate limit did not lift; the job gave up after waiting for it repeatedly."
        )


class BudgetWait(RateLimited):
    """Raised when the shared request budget has no slot for this account yet; nothing was
    sent to CallRail."""

    template = "Waiting for the CallRail request budget; the job will continue."
    remedy = "Nothing to do: the job waits for its turn in CallRail's quota and goes on by itself."


class ServerError(CallRailError, retriable=True):
    """Raised on a 5xx, or a 200 whose body is not what CallRail sends: safe to retry."""


class TransportError(CallRailError, errno=504, retriable=True):
    """Raised on a timeout, refused or reset connection: nothing (complete) came back."""

    template = "Could not reach CallRail: {message}"
    remedy = (
        "CallRail could not be reached at {failed_at} (it did not answer in time, or the "
        "connection failed); the job gave up after trying several times. " + TRY_AGAIN
    )


class ConnectionLost(TransportError):
    """The connection closed (reset, or ended) with the request sent and no answer begun:
    most often a pooled connection that the server's keep-alive timeout closed as it was
    reused (a page of a walk that waited on storage longer than that)."""


class PaginationError(CallRailError):
    """Raised when CallRail's paging metadata would make a walk run away (too many pages)."""

    remedy = (
        "CallRail's answer did not page as expected, so the walk was stopped. " + TRY_THEN_REPORT
    )
