"""The workers' Celery app, for the celery command: `celery -A tasks.app worker|beat|flower`."""

from tasks.celery_app import create_worker_app

app = create_worker_app()
