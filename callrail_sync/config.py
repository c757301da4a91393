"""The service's settings: one value, built once by each entry point and passed down.

`Settings()` reads the environment (docs/operations.md lists every one); keyword arguments
outrank it, so a test builds `Settings(redis_url=..., ...)` directly. Nothing reads the
environment at import: the shim's `create_app()`, the Celery app and the CLI each build one.
The fields are grouped by concern below; `Settings` is all of them, with flat variable names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class _Group(BaseSettings):
    model_config = SettingsConfigDict(env_ignore_empty=True, extra="ignore", populate_by_name=True)


class ConnectionSettings(_Group):
    """Where Redis and MongoDB are."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str | None = None
    """Celery broker; defaults to REDIS_URL."""
    result_backend: str | None = None
    """Celery result backend (task summaries for Flower); defaults to REDIS_URL."""
    mongo_url: str | None = None
    """Required by everything that reads or writes the store (`serve` and `stack` start
    SecantusDB, from the dev extra, when it is not set)."""
    mongo_db: str = "callrail_sync"
    mongo_timeout: float = 5.0
    """Seconds to wait for MongoDB before an operation fails (the shim then answers 503)."""


class CallRailSettings(_Group):
    """How the workers reach CallRail."""

    callrail_base_url: str = "https://api.callrail.com/v3"
    callrail_request_from: str = "callrail-sync"
    callrail_connect_timeout: float = 5.0
    callrail_read_timeout: float = 30.0
    page_concurrency: Annotated[int, Field(ge=1, le=64)] = 40
    """Pages of one listing fetched at once, after the first: 40 reads a 10,000-record
    listing (40 pages of 250) in two round trips."""
    callrail_page_size: Annotated[int, Field(ge=1, le=250)] = 250
    """Records asked for in each page CallRail sends: the listings (accounts, companies,
    webhooks), the streams (calls, forms, texts, trackers, tags, users) and the receiver's
    reconciliation. CallRail's most, 250, spends the fewest requests of the quota; smaller
    pages are lighter answers. A listing's walk stops at 10,000 pages (250,000 records in pages
    of 25); a stream's limits are in records (`MAX_WALK_RECORDS`, `MAX_RECORDS_PER_WINDOW`,
    `MAX_CALLS`). The job tests walk many pages of a few records each with it."""


class BudgetSettings(_Group):
    """CallRail's quota, and how the shared request budget keeps to it."""

    hourly_limit: int = 1000
    daily_limit: int = 10000
    budget_margin: float = 2.0
    """Seconds a granted request keeps its slot beyond the window (grant-to-arrival time)."""
    budget_max_inline_wait: float = 10.0
    """Budget waits up to this long sleep in the worker; longer ones become a task countdown."""
    max_rate_limit_waits: int = 500
    """Budget waits and 429s a job may sit through before it fails (they cost no attempt)."""


class AdmissionSettings(_Group):
    """How much work one owner may ask for."""

    write_jobs_per_owner: int = 20
    """Webhook write jobs an owner may have active at once."""
    writes_per_minute: int = 60
    """Webhook writes an owner may submit a minute (shared by every shim process)."""
    jobs_per_minute: int = 60
    """New jobs of any kind an owner may start a minute (shared by every shim process); a
    request that joins an active job costs nothing."""
    streams_per_owner: int = 20
    """Event streams an owner may have open at once (shared by every shim process)."""
    calls_page_max_bytes: int = 1024 * 1024
    """The most a page of `GET /calls` holds (its events' JSON); the rest is on the next."""


class RetrySettings(_Group):
    """When a job is tried again, taken over, or given up."""

    max_attempts: int = 6
    """How many times a job runs before a retriable error fails it."""
    backoff_base: float = 2.0
    backoff_cap: float = 300.0
    job_lease_seconds: float = 30.0
    """A running job's process beats every third of this, whatever its work waits on (the
    quota, a slow CallRail answer); a running job silent this long lost its process (a killed
    worker, a machine gone) and is taken up again, by the check that runs every third of it."""
    stale_job_seconds: float = 900.0
    """An active job untouched this long is revived (or failed) by the sweeper."""


class ScheduleSettings(_Group):
    """How fresh snapshots are kept (celery beat)."""

    snapshot_max_age: float = 3600.0
    """Seconds after which a listing is served and refreshed in the background."""
    sync_interval: float = 3600.0
    """Seconds between periodic syncs of every configured account."""
    sweep_interval: float = 300.0
    """Seconds between two runs of the sweeper."""


class NotificationSettings(_Group):
    """How an owner's callback is told that a job ended: each POST has `notify_timeout`
    seconds all told (resolving, connecting, TLS, sending, the status line); one that fails
    is tried again after `notify_backoff_base` seconds, the wait doubling each time (to 15
    minutes), until `notify_retry_for` seconds have passed since the job ended."""

    notify_retry_for: float = 3600.0
    notify_backoff_base: float = 10.0
    notify_timeout: float = 10.0
    notify_secret_grace: float = 24 * 3600.0
    """After a rotation, notifications are signed with the old secret too (two `v1=`) for
    this long, so that retries in flight still verify."""


class InboundSettings(_Group):
    """CallRail's deliveries to our own receiver, and the reconciliation that finds the lost
    ones (CallRail never sends a delivery twice)."""

    public_base_url: str | None = None
    """Where CallRail reaches this service (e.g. `https://sync.example.com`): a webhook made
    without a URL registers `<PUBLIC_BASE_URL>/v1/e/callrail/inbound/<company_id>`. Unset: a
    webhook needs its URL."""
    reconcile_interval: float = 600.0
    """Seconds between two reconciliations of the calls of every company with our receiver."""
    reconcile_window: float = 6 * 3600.0
    """How far back a reconciliation lists calls."""
    reconcile_grace: float = 3600.0
    """Calls that started less than this ago are left to their delivery (post-call may come
    20 minutes after hang-up, and the call itself lasts)."""
    inbox_retention_days: float = 30.0
    """Days a delivery stays in the inbox (`callrail_inbox`, the raw bytes as CallRail sent
    them) before MongoDB removes it (a TTL index); it is normalized within seconds."""
    call_events_retention_days: float = 760.0
    """Days a call event stays (`callrail_call_events`, a TTL index): 25 months, as long as
    CallRail itself keeps calls."""
    inbound_failures_per_minute: int = 30
    """Refused deliveries (forged, or to a company without our receiver) one address may send
    one company a minute; beyond, 429 without reading, writing or asking CallRail anything."""
    inbound_key_wait: Annotated[float, Field(ge=0, le=30)] = 5.0
    """Seconds a delivery whose plausible signature failed waits for its company's signing key
    to be read again from CallRail (a job), before it is refused as forged."""
    inbound_max_bytes: int = 256 * 1024
    """The largest delivery the receiver reads (a call with a long transcript is some KB)."""


class StreamSettings(_Group):
    """The streams beyond accounts and companies (calls, form submissions, texts, trackers,
    tags, users): what is synced, how far back, and how much of the budget it may take. See
    docs/streams.md."""

    sync_streams: str = "all"
    """Streams beat keeps for each configured account: `all`, `none`, or names separated by
    commas (e.g. `calls,trackers`)."""
    backfill_days: Annotated[int, Field(ge=1, le=762)] = 90
    """How far back a stream's history is read when an account connects (at most CallRail's
    25 months)."""
    rescan_days: Annotated[int, Field(ge=1, le=31)] = 3
    """After the backfill, each run reads these trailing days again (CallRail edits calls
    afterwards; no endpoint has an updated-since filter)."""
    stream_budget_share: Annotated[float, Field(gt=0, le=1)] = 0.5
    """The share of an account's hourly and daily budget stream syncs may take, so users'
    refreshes and webhook writes still get through."""
    stream_fields: str = ""
    """Optional fields asked for beside those the summary and filters need (comma-separated,
    e.g. `gclid,utm_source,milestones`)."""
    stream_time_zone: str = "UTC"
    """The time zone stated in every dated request (CallRail's default is ambiguous)."""
    window_pages: Annotated[int, Field(ge=1, le=100)] = 4
    """Pages (of `callrail_page_size`) a backfill window of calls is sized to, by the daily
    counts."""
    stream_concurrency: Annotated[int, Field(ge=1, le=64)] = 32
    """Windows of one backfill walked at once (each walks its pages in order)."""

    def streams_synced(self) -> list[str]:
        from callrail_sync.streams import RECORD_STREAMS

        if self.sync_streams.strip().lower() in ("", "all"):
            return list(RECORD_STREAMS)
        if self.sync_streams.strip().lower() == "none":
            return []
        wanted = {s.strip() for s in self.sync_streams.split(",")}
        return [s for s in RECORD_STREAMS if s in wanted]

    def extra_fields(self) -> list[str]:
        return [f.strip() for f in self.stream_fields.split(",") if f.strip()]


class OperationSettings(_Group):
    """The process itself: auth, logs, metrics, queues."""

    jwt_secret: str | None = None
    """HS256: at least 32 bytes unless DEVELOPMENT is set (the shim refuses to start)."""
    jwt_secret_file: str | None = None
    """A file holding the HS256 secret instead (what `stack` prints: it keeps its own in its
    run dir, mode 0600), read here so the secret never has to be shown or exported."""
    jwt_public_key: str | None = None
    jwt_issuer: str | None = None
    """When set, a token must carry this `iss`."""
    jwt_audience: str | None = None
    """When set, a token must carry this `aud`."""
    jwt_max_lifetime: float = 7 * 24 * 3600.0
    """The longest a token may still be valid (its `exp` at most this far ahead, and after
    its `iat` when it has one): a token that never expires is refused."""
    secrets_keys: str = ""
    """Fernet keys, comma-separated, newest first: signing keys and notification secrets are
    stored encrypted with the first, read with any (rotation). Required outside DEVELOPMENT
    (unset there: plain text, with a warning)."""
    secrets_keys_file: str | None = None
    """A file holding SECRETS_KEYS instead (`serve` and `stack` keep one in their run dir)."""
    development: bool = False
    """A machine for trying the service: a JWT secret shorter than 32 bytes is accepted."""
    log_level: str = "INFO"
    log_json: bool = True
    metrics_port: int = 9808
    """Where a Celery worker serves /metrics (0: not at all)."""
    shim_metrics_host: str = "127.0.0.1"
    shim_metrics_port: int = 9809
    """Where the shim serves /metrics: never on its public port (0: a free port, printed)."""
    namespace: Annotated[
        str, Field(validation_alias="CALLRAIL_NAMESPACE", pattern=r"^[A-Za-z0-9_.-]{0,64}$")
    ] = ""
    """A run's own name on a shared Redis: its queues, exchanges and every Redis key of ours
    carry it, so runs on one Redis never see each other's work. `serve` and `stack` set one
    per run dir; empty (the plain names) in production."""
    budget_scope: Literal["shared", "run"] = "shared"
    """`shared`: the CallRail request budget is every run's on this Redis, as CallRail's quota
    is; `run`: it is under this run's namespace (`serve` and `stack` with their own simulator,
    whose quota is the run's own)."""
    demo_account_id: str = "64f1c2a9e4b0a1b2c3d4e5f6"
    allow_private_urls: bool = False
    """Development and tests only: accept http and private or loopback targets for every URL
    the service calls or hands to CallRail (webhooks, notification callbacks)."""
    allowed_networks: str = ""
    """Comma-separated networks (CIDR) a callback may resolve to although they are not public,
    e.g. an operator's own receivers at `10.20.0.0/16`; empty by default."""


class Settings(
    ConnectionSettings,
    CallRailSettings,
    BudgetSettings,
    AdmissionSettings,
    RetrySettings,
    ScheduleSettings,
    NotificationSettings,
    InboundSettings,
    StreamSettings,
    OperationSettings,
):
    """The service's configuration (environment variables are the upper-case field names)."""

    @model_validator(mode="after")
    def _secrets_from_files(self) -> Settings:
        for field, name in (("jwt_secret", "JWT_SECRET"), ("secrets_keys", "SECRETS_KEYS")):
            path = getattr(self, field + "_file")
            if not path:
                continue
            try:
                secret = Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"{name}_FILE {path}: {exc.strerror or exc}") from None
            given = getattr(self, field)
            if given and given != secret:
                raise ValueError(f"{name} and {name}_FILE are both set and differ: unset one")
            setattr(self, field, secret)
        return self

    @property
    def broker(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def queue_suffix(self) -> str:
        """Appended to the queue and exchange names (`.NAMESPACE`)."""
        return f".{self.namespace}" if self.namespace else ""

    @property
    def redis_prefix(self) -> str:
        """What every Redis key and channel of ours starts with."""
        return f"callrail:{self.namespace}" if self.namespace else "callrail"

    @property
    def budget_prefix(self) -> str:
        """The request budget's: this run's (`budget_scope=run`), else the shared one."""
        return self.redis_prefix if self.budget_scope == "run" else "callrail"

    @property
    def backend(self) -> str:
        return self.result_backend or self.redis_url
