"""The name of every Celery task of the service. What each runs, and on which queue, is the
table in `tasks/table.py`; modules that only send a task import its name from here."""

from __future__ import annotations

from enum import StrEnum

# Redis redelivers an unacked message after the visibility timeout. It must be longer than any
# countdown the tasks use (they cap theirs at half of it, see tasks/jobs.py), or a waiting
# retry would be delivered twice. Here, beside the names, so that the tasks and the Celery
# configuration (`celeryconfig`, above them) share it without a cycle.
VISIBILITY_TIMEOUT = 2 * 3600


class TaskName(StrEnum):
    SYNC_ACCOUNTS = "callrail.sync.accounts"
    SYNC_COMPANIES = "callrail.sync.companies"
    SYNC_STREAM = "callrail.sync.stream"
    WEBHOOK_LIST = "callrail.webhook.list"
    WEBHOOK_CREATE = "callrail.webhook.create"
    WEBHOOK_UPDATE = "callrail.webhook.update"
    CALLS_RECONCILE = "callrail.inbound.reconcile"
    RECEIVER_KEY = "callrail.inbound.signing_key"
    NOTIFY = "callrail.notify.deliver"
    NORMALIZE = "callrail.inbound.normalize"
    PLAN = "callrail.sync.configured_accounts"
    SWEEP = "callrail.jobs.sweep"
    REVIVE = "callrail.jobs.revive"
    RECONCILE = "callrail.inbound.plan"
