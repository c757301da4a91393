"""The Celery application.

Run a worker with `celery -A worker.celery_app worker -Q callrail.listings,callrail.webhooks`.
"""

from __future__ import annotations

from celery import Celery

app = Celery("callrail_sync", include=["tasks.sync", "tasks.webhooks", "tasks.schedule"])
app.config_from_object("celeryconfig")
