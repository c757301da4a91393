"""The workers' Celery app, for the celery command: `celery -A worker.app worker|beat|flower`."""

from worker.celery_app import create_worker_app

app = create_worker_app()
