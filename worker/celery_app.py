"""The workers' Celery app: every task of `tasks.table` registered, logging, metrics and the
stop handlers wired. (The app that only sends is `celeryconfig.create_celery`.)"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

from callrail_sync.config import Settings
from callrail_sync.logs import setup_logging
from callrail_sync.runtime import build_runtime, configure
from celeryconfig import lazy_settings, new_app
from tasks.table import register_tasks
from worker.shutdown import install_handlers

log = logging.getLogger("callrail_sync.app")


def create_worker_app(settings: Settings | None = None) -> Celery:
    """The app workers and beat run: every task registered, logging and metrics wired."""
    lazy = lazy_settings(settings)
    app = new_app(lazy, current=True)
    # Pool threads look tasks up in Celery's default app (the current app is per thread).
    app.set_default()
    register_tasks(app)
    install_handlers()

    def init_worker(instance: Any = None, **_: Any) -> None:
        # Sent only by a worker the celery command started (tests and `serve` configure their
        # own runtime), and to every app's receiver: answer for this app's worker only.
        if instance is not None and getattr(instance, "app", app) is not app:
            return
        configure(lambda: build_runtime(lazy()))
        _serve_metrics(lazy().metrics_port)

    def init_logging(**_: Any) -> None:
        # Workers and beat log JSON lines through the scrubbing filter (callrail_sync/logs.py).
        setup_logging(lazy().log_level, json_lines=lazy().log_json)

    signals.celeryd_init.connect(init_worker, weak=False)
    signals.setup_logging.connect(init_logging, weak=False, dispatch_uid="crs-logging")
    return app


def _serve_metrics(port: int) -> None:
    """A worker serves its Prometheus metrics on METRICS_PORT (0: not at all)."""
    if not port:
        return
    from prometheus_client import start_http_server

    from callrail_sync.metrics import serve_registry

    try:
        start_http_server(port, registry=serve_registry())
    except OSError as exc:
        log.warning("metrics port unavailable", extra={"port": port, "error": str(exc)})
