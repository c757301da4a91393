"""Prometheus metrics of the workers and the shim (names documented in docs/operations.md).

The shim serves them at `/metrics`, with the readings it takes at each scrape (queues, active
jobs, budgets, backfills: `api_shim/readings.py`). A Celery worker serves its own at
`METRICS_PORT` (default 9808); with the prefork pool set PROMETHEUS_MULTIPROC_DIR so the
children's counts are summed.
"""

from __future__ import annotations

import os

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess

JOBS = Counter("callrail_jobs_total", "Jobs that reached a status", ["type", "status"])
REQUESTS = Counter(
    "callrail_requests_total",
    "Requests sent to CallRail, by HTTP status (0: no answer)",
    ["method", "status"],
)
ACCOUNT_REQUESTS = Counter(
    "callrail_account_requests_total",
    "Requests sent to CallRail, by what CallRail's quota charges (the CallRail account in the "
    "path; `key` for /a.json) and HTTP status (0: no answer)",
    ["account", "status"],
)
RATE_LIMITED = Counter("callrail_rate_limited_total", "429 answers from CallRail")
BUDGET_WAIT = Counter(
    "callrail_budget_wait_seconds_total", "Seconds spent waiting for the shared request budget"
)
PAGES = Counter("callrail_pages_total", "Listing pages stored", ["kind"])
SYNC_SECONDS = Histogram(
    "callrail_sync_duration_seconds",
    "Duration of successful syncs",
    ["kind"],
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
)
NOTIFICATIONS = Counter(
    "callrail_notification_attempts_total",
    "POSTs to owners' callbacks, by outcome (delivered, retrying, failed)",
    ["outcome"],
)
INBOUND = Counter(
    "callrail_inbound_deliveries_total",
    "Deliveries CallRail POSTed to our receiver, by outcome (accepted, duplicate, forged, "
    "unknown_company, unreadable)",
    ["outcome"],
)
MISSED = Counter(
    "callrail_missed_deliveries_total",
    "Calls CallRail listed that never arrived by webhook (recorded by reconciliation)",
)


def beat_planned_key(redis_prefix: str) -> str:
    """Redis: when the periodic plan last ran (Unix seconds), the beat's heartbeat; the shim
    exports it as callrail_beat_last_plan_timestamp_seconds (api_shim/readings.py)."""
    return f"{redis_prefix}:beat:planned_at"


def serve_registry() -> CollectorRegistry:
    """This process's registry, or one summing every process's files in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def exposition() -> bytes:
    """The current metrics in Prometheus' text format."""
    return generate_latest(serve_registry())
