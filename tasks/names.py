"""The name of every Celery task of the service. What each runs, and on which queue, is the
table in `tasks/table.py`; modules that only send a task import its name from here."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

# Redis redelivers an unacked message after the visibility timeout. It must be longer than any
# countdown the tasks use (they cap theirs at half of it, see tasks/jobs.py), or a waiting
# retry would be delivered twice. Here, beside the names, so that the tasks and the Celery
# configuration (`celeryconfig`, above them) share it without a cycle.
VISIBILITY_TIMEOUT = 2 * 3600

QueueName = Literal["webhooks", "listings", "periodic", "notify"]
"""The queues, job lanes first in the order served: `webhooks` (a webhook write, a delivery to
normalize), `listings`, `periodic` (beat's syncs), then `notify` (calls to the users'
callbacks), served by workers of its own. Each task of `tasks/table.py` has one as its
default, none `periodic`: a job of the periodic lane is sent there whatever its task
(`CeleryQueue.send`). `celeryconfig.Queues` makes them Celery's queue names."""


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
