"""Every exception type of callrail-sync, in one place.

Each type knows two things about itself: whether trying again can help (`retriable`), and what
the dashboard user should read (`errno`, `user_message`). The shim maps them to HTTP once; the
tasks map them to retry-or-fail once.
"""

from __future__ import annotations

API_KEY_NOT_FOUND = "API key not found. Please add your CallRail API key first."


class CallRailSyncError(Exception):
    """Base of every error this project raises on purpose."""

    retriable = False
    errno = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def user_message(self) -> str:
        return self.message


# --- service errors -------------------------------------------------------------------------


class ApiKeyNotFound(CallRailSyncError):
    """The DashClicks account has no usable (present, not soft-deleted, not revoked) key."""

    errno = 400

    def __init__(self) -> None:
        super().__init__(API_KEY_NOT_FOUND)


class ValidationFailed(CallRailSyncError):
    """Our own input validation refused a request before any work was queued."""

    errno = 400


class NotFound(CallRailSyncError):
    """A job, webhook or snapshot that does not exist for this owner."""

    errno = 404


# --- CallRail errors ------------------------------------------------------------------------


class CallRailError(CallRailSyncError):
    """CallRail answered with an error status, or could not be reached."""

    errno = 502

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def user_message(self) -> str:
        return f"CallRail error: {self.message}"


class Unauthorized(CallRailError):
    """401: the API key is wrong or was revoked. Retrying cannot help."""

    errno = 401

    @property
    def user_message(self) -> str:
        return "CallRail rejected the API key. Please re-enter your CallRail API key."


class Forbidden(CallRailError):
    """403: the key is valid but lacks a permission (e.g. Integration Admin for webhooks)."""

    errno = 403

    @property
    def user_message(self) -> str:
        return f"CallRail denied access: {self.message}"


class UpstreamNotFound(CallRailError):
    """404: the account, company or integration does not exist for this key."""

    errno = 404

    @property
    def user_message(self) -> str:
        return f"Not found in CallRail: {self.message}"


class InvalidRequest(CallRailError):
    """400, 422 and other 4xx: CallRail refused the request's content; its message is kept."""

    errno = 400

    @property
    def user_message(self) -> str:
        return f"CallRail refused the request: {self.message}"


class RateLimited(CallRailError):
    """429: the key's hourly or daily quota is spent. `retry_after` is seconds, when sent."""

    retriable = True
    errno = 429

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, status=429)
        self.retry_after = retry_after

    @property
    def user_message(self) -> str:
        return "CallRail rate limit reached; the job will retry."


class ServerError(CallRailError):
    """5xx: CallRail failed. Safe to retry for reads."""

    retriable = True
    errno = 502


class TransportError(CallRailError):
    """Timeout, refused or reset connection: nothing (or nothing complete) came back."""

    retriable = True
    errno = 504

    @property
    def user_message(self) -> str:
        return f"Could not reach CallRail: {self.message}"


class PaginationError(CallRailError):
    """CallRail's paging metadata would make the walk run away (too many pages)."""

    errno = 502
