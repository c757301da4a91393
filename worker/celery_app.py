"""The Celery application.

Run a worker with `celery -A worker.celery_app worker -Q callrail.listings,callrail.webhooks`.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

from worker.config import Settings
from worker.logs import setup_logging

app = Celery(
    "callrail_sync",
    include=["tasks.sync", "tasks.webhooks", "tasks.schedule", "tasks.shutdown"],
)
app.config_from_object("celeryconfig")


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    """Workers and beat log JSON lines through the scrubbing filter (see worker/logs.py)."""
    settings = Settings.from_env()
    setup_logging(settings.log_level, json_lines=settings.log_json)


@signals.worker_init.connect
def _serve_metrics(**_: Any) -> None:
    """A worker serves its Prometheus metrics on METRICS_PORT."""
    port = Settings.from_env().metrics_port
    if port:
        from prometheus_client import start_http_server

        from worker.metrics import serve_registry

        try:
            start_http_server(port, registry=serve_registry())
        except OSError as exc:
            logging.getLogger("callrail_sync.metrics").warning(
                "metrics port unavailable", extra={"port": port, "error": str(exc)}
            )
