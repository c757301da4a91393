"""Settings, read once from environment variables. Every variable is listed in the README."""

from __future__ import annotations

import os

from pydantic import BaseModel, Field


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


class Settings(BaseModel):
    """The service's configuration as one value (see `Settings.from_env`)."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str | None = None
    """Celery broker; defaults to REDIS_URL."""
    result_backend: str | None = None
    """Celery result backend (task summaries for Flower); defaults to REDIS_URL."""
    mongo_url: str | None = None
    """None means an in-process store (mongomock); only `callrail-sync serve` and tests use it."""
    mongo_db: str = "callrail_sync"
    callrail_base_url: str = "https://api.callrail.com/v3"
    callrail_request_from: str = "callrail-sync"
    callrail_connect_timeout: float = 5.0
    callrail_read_timeout: float = 30.0
    page_concurrency: int = Field(16, ge=1, le=64)
    hourly_limit: int = 1000
    daily_limit: int = 10000
    budget_margin: float = 2.0
    """Seconds a granted request keeps its slot beyond the window (grant-to-arrival time)."""
    budget_max_inline_wait: float = 10.0
    """Budget waits up to this long sleep in the worker; longer ones become a task countdown."""
    max_rate_limit_waits: int = 500
    """Budget waits and 429s a job may sit through before it fails (they cost no attempt)."""
    max_attempts: int = 6
    """How many times a job runs before a retriable error fails it."""
    backoff_base: float = 2.0
    backoff_cap: float = 300.0
    snapshot_max_age: float = 3600.0
    """Seconds after which a listing is served and refreshed in the background."""
    sync_interval: float = 3600.0
    """Seconds between periodic syncs of every configured account (celery beat)."""
    job_lease_seconds: float = 90.0
    """A running job untouched this long may be taken over by another message of it (its
    worker died); longer than the slowest page (read timeout + inline budget wait)."""
    stale_job_seconds: float = 900.0
    """An active job untouched this long is revived (or failed) by the sweeper."""
    metrics_port: int = 9808
    """Where a Celery worker serves /metrics (0: not at all)."""
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    log_level: str = "INFO"
    log_json: bool = True
    demo_account_id: str = "64f1c2a9e4b0a1b2c3d4e5f6"

    @classmethod
    def from_env(cls) -> Settings:
        values: dict[str, object] = {}
        for name, field in cls.model_fields.items():
            raw = _env(name.upper())
            if raw is not None:
                values[name] = (
                    raw.lower() in ("1", "true", "yes") if field.annotation is bool else raw
                )
        return cls.model_validate(values)
