"""The Celery apps: a sending one for the shim and the CLI, and the workers' one.

An app made without settings reads nothing when it is made: Celery asks for its configuration
(and so `Settings()` reads the environment) only when a worker, beat or Flower starts.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

import celeryconfig
from tasks.registry import register_tasks
from tasks.shutdown import install_handlers
from worker.config import Settings
from worker.logs import setup_logging
from worker.runtime import build_runtime, configure

log = logging.getLogger("callrail_sync.app")


class LazySettings:
    """Settings given now, or read from the environment the first time they are needed."""

    def __init__(self, settings: Settings | None) -> None:
        self._settings = settings

    def get(self) -> Settings:
        if self._settings is None:
            self._settings = Settings()
        return self._settings


def create_celery(settings: Settings | None = None) -> Celery:
    """An app that only sends jobs' messages (the shim, the CLI). It never becomes Celery's
    current app: a worker in the same process (`serve`, tests) must find its tasks there."""
    return _app(LazySettings(settings), current=False)


def create_worker_app(settings: Settings | None = None) -> Celery:
    """The app workers and beat run: every task registered, logging and metrics wired."""
    lazy = LazySettings(settings)
    app = _app(lazy, current=True)
    # Pool threads look tasks up in Celery's default app (the current app is per thread).
    app.set_default()
    register_tasks(app)
    install_handlers()

    def init_worker(instance: Any = None, **_: Any) -> None:
        # Sent only by a worker the celery command started (tests and `serve` configure their
        # own runtime), and to every app's receiver: answer for this app's worker only.
        if instance is not None and getattr(instance, "app", app) is not app:
            return
        configure(lambda: build_runtime(lazy.get()))
        _serve_metrics(lazy.get().metrics_port)

    def init_logging(**_: Any) -> None:
        # Workers and beat log JSON lines through the scrubbing filter (worker/logs.py).
        setup_logging(lazy.get().log_level, json_lines=lazy.get().log_json)

    signals.celeryd_init.connect(init_worker, weak=False)
    signals.setup_logging.connect(init_logging, weak=False, dispatch_uid="crs-logging")
    return app


def _app(lazy: LazySettings, *, current: bool) -> Celery:
    app = Celery("callrail_sync", set_as_current=current)
    # Evaluated when Celery first reads its configuration, not now.
    app.add_defaults(lambda: celeryconfig.config(lazy.get()))
    return app


def _serve_metrics(port: int) -> None:
    """A worker serves its Prometheus metrics on METRICS_PORT (0: not at all)."""
    if not port:
        return
    from prometheus_client import start_http_server

    from worker.metrics import serve_registry

    try:
        start_http_server(port, registry=serve_registry())
    except OSError as exc:
        log.warning("metrics port unavailable", extra={"port": port, "error": str(exc)})
