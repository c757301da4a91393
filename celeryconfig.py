"""Celery configuration, from environment variables (see the README's Configuration)."""

import os

from kombu import Exchange, Queue

from worker.config import Settings

_settings = Settings.from_env()

broker_url = _settings.broker_url or _settings.redis_url
# Job status lives in Mongo (the only source of truth for polling); the result backend only
# keeps each task's small summary for Flower and operators, and forgets it after a day.
result_backend = _settings.result_backend or _settings.redis_url
result_expires = 24 * 3600

# JSON only: a pickle payload from a compromised producer would be code execution.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]

# Ack after the task ran, and requeue if the worker process dies, so a killed worker loses no
# job; the tasks are idempotent, which makes the redelivery safe.
task_acks_late = True
task_reject_on_worker_lost = True
# One message at a time per process: a sync can take minutes, and prefetched messages would
# wait behind it instead of going to an idle worker.
worker_prefetch_multiplier = 1

# A sync of 50,000 companies is about 200 pages; half an hour is far beyond a healthy run, so
# hitting the soft limit means something is stuck (the job fails with a clear error instead).
task_soft_time_limit = 30 * 60
task_time_limit = 32 * 60

# Redis redelivers an unacked message after the visibility timeout. It must be longer than any
# countdown the tasks use (they cap theirs at half of it, see tasks/jobs.py), or a waiting
# retry would be delivered twice.
VISIBILITY_TIMEOUT = 2 * 3600
broker_transport_options = {"visibility_timeout": VISIBILITY_TIMEOUT}
result_backend_transport_options = {"visibility_timeout": VISIBILITY_TIMEOUT}

# Listings and webhook changes have their own queues, so a long backlog of syncs never delays
# a user's webhook change (run a worker on each, or one worker on both).
# `callrail-sync serve` with its in-process store sets a suffix, so that two of them on one
# Redis never take each other's jobs (each one's jobs exist only in its own store).
_suffix = os.environ.get("CALLRAIL_QUEUE_SUFFIX", "")
LISTINGS = "callrail.listings" + _suffix
WEBHOOKS = "callrail.webhooks" + _suffix
_exchange = Exchange("callrail" + _suffix, type="direct")
task_queues = (
    Queue(LISTINGS, _exchange, routing_key=LISTINGS),
    Queue(WEBHOOKS, _exchange, routing_key=WEBHOOKS),
)
task_default_queue = LISTINGS
task_default_exchange = "callrail" + _suffix
task_default_routing_key = LISTINGS
task_routes = {
    "callrail.webhook.*": {"queue": WEBHOOKS, "routing_key": WEBHOOKS},
    "callrail.sync.*": {"queue": LISTINGS, "routing_key": LISTINGS},
    "callrail.jobs.*": {"queue": LISTINGS, "routing_key": LISTINGS},
}

# Task events let Flower show every task's progress, retries and failures.
worker_send_task_events = True
task_send_sent_event = True
task_track_started = True

broker_connection_retry_on_startup = True
timezone = "UTC"
enable_utc = True
worker_hijack_root_logger = False

# Periodic syncs of every configured account (run exactly one beat; see the README).
beat_schedule = {
    "sync-configured-accounts": {
        "task": "callrail.sync.configured_accounts",
        "schedule": max(60.0, _settings.sync_interval / 4),
        "options": {"queue": LISTINGS},
    },
    # Revive jobs whose worker vanished (or whose message was lost); see tasks/schedule.py.
    "sweep-stale-jobs": {
        "task": "callrail.jobs.sweep",
        "schedule": 300.0,
        "options": {"queue": LISTINGS},
    },
}
