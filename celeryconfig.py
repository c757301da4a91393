"""Celery configuration: every setting with the reason it has its value, and the app that
only sends jobs' messages (the shim, the CLI).

`config(settings)` turns our `Settings` into Celery's; the Celery apps (`worker/celery_app.py`,
`create_celery` here) read it when Celery first needs its configuration, never at import: an
app made without settings reads nothing when it is made (`Settings()` reads the environment
only when a worker, beat or Flower starts). This module sits above `tasks` (it routes their
table) and below the worker and the shim.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Celery

from callrail_sync.config import Settings
from tasks.names import VISIBILITY_TIMEOUT, QueueName, TaskName


@dataclass(frozen=True)
class Queues:
    """The queue names. A job worker serves `jobs` in order: a webhook change first, then a
    listing a user asked for, then beat's periodic syncs, which therefore never delay what a
    user waits for (see `queue_order_strategy` below). Notification attempts (`notify`) call
    the users' own URLs, which may be slow on purpose: workers of their own serve them
    (`callbacks`), so a slow callback never holds a process a webhook write or a sync needs."""

    suffix: str = ""

    def named(self, name: QueueName) -> str:
        """The queue of a queue name of the task table: webhooks, listings, periodic, notify."""
        return f"callrail.{name}{self.suffix}"

    @property
    def webhooks(self) -> str:
        return self.named("webhooks")

    @property
    def listings(self) -> str:
        return self.named("listings")

    @property
    def periodic(self) -> str:
        return self.named("periodic")

    @property
    def notify(self) -> str:
        return self.named("notify")

    @property
    def jobs(self) -> list[str]:
        """What a job worker serves, first served first."""
        return [self.webhooks, self.listings, self.periodic]

    @property
    def callbacks(self) -> list[str]:
        """What a notification worker serves."""
        return [self.notify]

    @property
    def all(self) -> list[str]:
        return [*self.jobs, *self.callbacks]


def config(settings: Settings) -> dict[str, Any]:
    """Celery's settings for ours."""
    from tasks.table import TASKS  # every task module: imported when Celery is configured

    queues = Queues(settings.queue_suffix)
    exchange = "callrail" + settings.queue_suffix
    return {
        "broker_url": settings.broker,
        # A namespaced run (serve, stack) has its own control and event exchanges too: its
        # workers answer only its pings, its Flower sees only its tasks.
        "control_exchange": "celery" + settings.queue_suffix,
        "event_exchange": "celeryev" + settings.queue_suffix,
        # Job status lives in Mongo (the only source of truth for polling); the result backend
        # only keeps each task's small summary for Flower and operators, for a day.
        "result_backend": settings.backend,
        "result_expires": 24 * 3600,
        # JSON only: a pickle payload from a compromised producer would be code execution.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        # Ack after the task ran, and requeue if the worker process dies, so a killed worker
        # loses no job; the tasks are idempotent, which makes the redelivery safe.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # One message at a time per process: a sync can take minutes, and prefetched messages
        # would wait behind it instead of going to an idle worker.
        "worker_prefetch_multiplier": 1,
        # A sync of 50,000 companies is about 200 pages; half an hour is far beyond a healthy
        # run, so the soft limit means something is stuck (the job fails with a clear error).
        "task_soft_time_limit": 30 * 60,
        "task_time_limit": 32 * 60,
        # "priority": a worker asks Redis for the first non-empty queue in the order above
        # (BRPOP checks its keys in order), instead of taking turns; with prefetch 1, the
        # next free process takes a user's job before any periodic one.
        "broker_transport_options": {
            "visibility_timeout": VISIBILITY_TIMEOUT,
            "queue_order_strategy": "priority",
        },
        "result_backend_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT},
        # One direct exchange; each queue takes the messages routed with its own name.
        "task_queues": {
            name: {"exchange": exchange, "exchange_type": "direct", "routing_key": name}
            for name in queues.all
        },
        "task_default_queue": queues.listings,
        # Ours, not Celery's: where a job of the periodic lane goes (tasks/submit.py).
        "callrail_periodic_queue": queues.periodic,
        "task_default_exchange": exchange,
        "task_default_routing_key": queues.listings,
        # Each task's default queue, from the one table of tasks (tasks/table.py).
        "task_routes": {
            str(spec.name): {
                "queue": queues.named(spec.queue),
                "routing_key": queues.named(spec.queue),
            }
            for spec in TASKS
        },
        # Task events let Flower show every task's progress, retries and failures.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_track_started": True,
        "broker_connection_retry_on_startup": True,
        "timezone": "UTC",
        "enable_utc": True,
        "worker_hijack_root_logger": False,
        # Periodic syncs of every configured account (run exactly one beat; see the README).
        "beat_schedule": {
            "sync-configured-accounts": {
                "task": str(TaskName.PLAN),
                # At least every minute, so an account's own shorter interval is kept too.
                "schedule": min(60.0, max(1.0, settings.sync_interval / 4)),
                "options": {"queue": queues.listings},
            },
            # Revive jobs whose worker vanished (or whose message was lost).
            "sweep-stale-jobs": {
                "task": str(TaskName.SWEEP),
                "schedule": settings.sweep_interval,
                "options": {"queue": queues.listings},
            },
            # Take up again the jobs whose worker died (their heartbeat fell silent).
            "revive-orphaned-jobs": {
                "task": str(TaskName.REVIVE),
                "schedule": max(1.0, settings.job_lease_seconds / 3),
                "options": {"queue": queues.webhooks},
            },
            # Find the calls CallRail never delivered (it does not send a delivery twice).
            "reconcile-calls": {
                "task": str(TaskName.RECONCILE),
                "schedule": settings.reconcile_interval,
                "options": {"queue": queues.listings},
            },
        },
    }


def lazy_settings(settings: Settings | None) -> Callable[[], Settings]:
    """Settings given now, or read from the environment the first time they are needed."""
    return functools.cache(lambda: Settings() if settings is None else settings)


def new_app(lazy: Callable[[], Settings], *, current: bool, results: bool = True) -> Celery:
    """`results=False`: an app with no result backend; it never waits on Redis for a result
    it would not read (job status lives in MongoDB), so a sender without Redis fails fast."""
    app = Celery("callrail_sync", set_as_current=current)
    # Evaluated when Celery first reads its configuration, not now.
    no_backend = {} if results else {"result_backend": None}
    app.add_defaults(lambda: config(lazy()) | no_backend)
    return app


def create_celery(settings: Settings | None = None) -> Celery:
    """An app that only sends jobs' messages. It never becomes Celery's current app: a worker
    in the same process (`serve`, tests) must find its tasks there."""
    return new_app(lazy_settings(settings), current=False, results=False)
