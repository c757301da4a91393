"""Which Celery task runs which work: one table, and the one function that registers it."""

from __future__ import annotations

from typing import Any

from celery import Celery, Task

from celeryconfig import PLAN_TASK, RECONCILE_TASK, SWEEP_TASK
from tasks import inbound, notify, schedule, sync, webhooks
from tasks.jobs import Summary, Work, run_job
from tasks.submit import TASK_NAMES, CeleryQueue
from worker.job import JobType
from worker.runtime import runtime

WORK: dict[JobType, Work] = {
    JobType.SYNC_ACCOUNTS: sync.sync_accounts_work,
    JobType.SYNC_COMPANIES: sync.sync_companies_work,
    JobType.WEBHOOK_LIST: webhooks.list_work,
    JobType.WEBHOOK_CREATE: webhooks.create_work,
    JobType.WEBHOOK_UPDATE: webhooks.update_work,
    JobType.CALLS_RECONCILE: inbound.reconcile_work,
    JobType.RECEIVER_KEY: inbound.signing_key_work,
}


def _job_task(work: Work) -> Any:
    def run(task: Task, job_id: str) -> Summary:
        return run_job(task, job_id, work)

    run.__doc__ = work.__doc__
    return run


def register_tasks(app: Celery) -> None:
    """Every job type's task (its job id the one argument), and beat's two tasks."""
    for job_type, work in WORK.items():
        # max_retries=None: our own counters (attempts, rate-limit waits) decide when to stop.
        app.task(bind=True, name=TASK_NAMES[job_type], max_retries=None, shared=False)(
            _job_task(work)
        )

    app.task(bind=True, name=notify.NOTIFY_TASK, max_retries=None, shared=False)(notify.deliver)
    app.task(bind=True, name=PLAN_TASK, shared=False)(plan)
    app.task(bind=True, name=SWEEP_TASK, shared=False)(sweep)
    app.task(bind=True, name=inbound.NORMALIZE_TASK, shared=False)(normalize)
    app.task(bind=True, name=RECONCILE_TASK, shared=False)(reconcile)


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
        task.app.send_task(inbound.NORMALIZE_TASK, args=[keys])

    return {
        "swept": swept,
        "notifications": notify.resend_overdue(rt, send),
        "deliveries": inbound.resend_pending(rt, normalize_again),
    }
