"""The Celery app that only sends jobs' messages (the shim, the CLI), and the lazy settings the
worker's app shares with it.

An app made without settings reads nothing when it is made: Celery asks for its configuration
(and so `Settings()` reads the environment) only when a worker, beat or Flower starts.
"""

from __future__ import annotations

from celery import Celery

import celeryconfig
from callrail_sync.config import Settings


class LazySettings:
    """Settings given now, or read from the environment the first time they are needed."""

    def __init__(self, settings: Settings | None) -> None:
        self._settings = settings

    def get(self) -> Settings:
        if self._settings is None:
            self._settings = Settings()
        return self._settings


def new_app(lazy: LazySettings, *, current: bool, results: bool = True) -> Celery:
    """`results=False`: an app with no result backend; it never waits on Redis for a result
    it would not read (job status lives in MongoDB), so a sender without Redis fails fast."""
    app = Celery("callrail_sync", set_as_current=current)
    # Evaluated when Celery first reads its configuration, not now.
    no_backend = {} if results else {"result_backend": None}
    app.add_defaults(lambda: celeryconfig.config(lazy.get()) | no_backend)
    return app


def create_celery(settings: Settings | None = None) -> Celery:
    """An app that only sends jobs' messages. It never becomes Celery's current app: a worker
    in the same process (`serve`, tests) must find its tasks there."""
    return new_app(LazySettings(settings), current=False, results=False)
