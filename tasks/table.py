"""Every Celery task of the service in one table: its name, what it runs, its default queue.

Celery's routes (`celeryconfig.py`), the worker's registration (`worker/celery_app.py`) and
`submit` (through `CeleryQueue`) all read `TASKS` and `JOBS`. A job's lane stays a property of
the job: a periodic job's messages take the periodic queue whatever its task's default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Celery, Task

from callrail_sync.job import Job, JobType, Lane
from callrail_sync.runtime import runtime
from tasks import inbound, notify, schedule, streams, sync, webhooks
from tasks.jobs import Summary, Work, run_job
from tasks.names import QueueName, TaskName


@dataclass(frozen=True)
class TaskSpec:
    name: TaskName
    run: Callable[..., Any]
    """The task's body; its first argument is the bound Celery task."""
    queue: QueueName
    retries: bool = False
    """Whether the body retries itself (`max_retries=None`: our counters decide when to stop)."""


def _job(name: TaskName, work: Work, queue: QueueName) -> TaskSpec:
    """A job type's task: it runs `work` on the job whose id is its one argument, and retries
    itself."""

    def run(task: Task, job_id: str) -> Summary:
        return run_job(task, job_id, work)

    run.__doc__ = work.__doc__
    return TaskSpec(name, run, queue, retries=True)


def plan(task: Task) -> dict[str, Any]:
    """Queue syncs for every configured account whose snapshot is due."""
    return {"queued": schedule.plan_syncs(runtime(), CeleryQueue(task.app))}


def normalize(task: Task, keys: list[str]) -> dict[str, int]:
    """Turn deliveries the receiver kept into call and form events."""
    return inbound.normalize(runtime(), keys)


def reconcile(task: Task) -> dict[str, Any]:
    """Queue the reconciliation of every account with our receiver."""
    return {"queued": inbound.plan_reconciles(runtime(), CeleryQueue(task.app))}


def sweep(task: Task) -> dict[str, Any]:
    """Requeue or fail jobs whose worker vanished or whose message was lost; queue again the
    notifications and the kept deliveries whose message was lost."""
    rt = runtime()
    send = notify.sender(task)
    swept = schedule.sweep_stale_jobs(rt, CeleryQueue(task.app), send)

    def normalize_again(keys: list[str]) -> None:
        task.app.send_task(TaskName.NORMALIZE, args=[keys])

    return {
        "swept": swept,
        "notifications": notify.resend_overdue(rt, send),
        "deliveries": inbound.resend_pending(rt, normalize_again),
    }


def revive(task: Task) -> dict[str, Any]:
    """Take up again the running jobs whose process died (its heartbeat fell silent)."""
    rt = runtime()
    return {"revived": schedule.revive_orphans(rt, CeleryQueue(task.app), notify.sender(task))}


JOBS: dict[JobType, TaskSpec] = {
    JobType.SYNC_ACCOUNTS: _job(TaskName.SYNC_ACCOUNTS, sync.sync_accounts_work, "listings"),
    JobType.SYNC_COMPANIES: _job(TaskName.SYNC_COMPANIES, sync.sync_companies_work, "listings"),
    JobType.SYNC_STREAM: _job(TaskName.SYNC_STREAM, streams.sync_stream_work, "listings"),
    # A read, like a listing: it never goes before a user's webhook write.
    JobType.WEBHOOK_LIST: _job(TaskName.WEBHOOK_LIST, webhooks.list_work, "listings"),
    JobType.WEBHOOK_CREATE: _job(TaskName.WEBHOOK_CREATE, webhooks.create_work, "webhooks"),
    JobType.WEBHOOK_UPDATE: _job(TaskName.WEBHOOK_UPDATE, webhooks.update_work, "webhooks"),
    JobType.CALLS_RECONCILE: _job(TaskName.CALLS_RECONCILE, inbound.reconcile_work, "webhooks"),
    JobType.RECEIVER_KEY: _job(TaskName.RECEIVER_KEY, inbound.signing_key_work, "webhooks"),
}
"""Each job type's task; the job id is its one argument."""

TASKS: list[TaskSpec] = [
    *JOBS.values(),
    # A callback may answer slowly on purpose: its own queue and workers, so it never holds
    # a process a webhook write or a sync needs. Kept deliveries become events at once.
    TaskSpec(TaskName.NOTIFY, notify.deliver, "notify", retries=True),
    TaskSpec(TaskName.NORMALIZE, normalize, "webhooks"),
    # Beat's four: plan periodic syncs, sweep stale jobs, revive the jobs of lost workers,
    # plan reconciliations.
    TaskSpec(TaskName.PLAN, plan, "listings"),
    TaskSpec(TaskName.SWEEP, sweep, "listings"),
    # Short and urgent (a user watches a frozen progress bar): first served.
    TaskSpec(TaskName.REVIVE, revive, "webhooks"),
    TaskSpec(TaskName.RECONCILE, reconcile, "listings"),
]
"""Every task a worker registers."""


def register_tasks(app: Celery) -> None:
    """Register every task of the table with the worker's app."""
    for spec in TASKS:
        options: dict[str, Any] = {"max_retries": None} if spec.retries else {}
        app.task(bind=True, name=str(spec.name), shared=False, **options)(spec.run)


class CeleryQueue:
    """`tasks.submit.JobQueue` through a Celery app's broker."""

    def __init__(self, app: Celery) -> None:
        self._app = app

    def send(self, job: Job, message_id: str, countdown: float | None) -> None:
        # A periodic job's messages take the periodic queue, served after every other one;
        # the rest follow the task's route (listings or webhooks).
        periodic = job.lane is Lane.PERIODIC
        queue = self._app.conf.get("callrail_periodic_queue") if periodic else None
        self._app.send_task(
            str(JOBS[job.type].name),
            args=[job.id],
            countdown=countdown,
            task_id=message_id,
            queue=queue,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )
