"""Graceful stop: a worker told to stop (SIGTERM, a warm shutdown) finishes the page in flight,
then hands the rest of each running sync back to the queue; the next worker resumes it from
the pages already stored.

The signal reaches the worker's main process only. Threads of that process see an Event;
prefork children, which get no signal, see a flag the main process sets in Redis for its
hostname. Syncs check both between pages (`stop_point`).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from celery import current_task, signals

from worker import errors
from worker.runtime import runtime

log = logging.getLogger("callrail_sync.shutdown")
_stopping = threading.Event()
FLAG_SECONDS = 3600


def _flag_key(hostname: str) -> str:
    return f"callrail:stopping:{hostname}"


def _redis() -> redis.Redis | None:
    """The runtime's Redis; None where there is none (or no runtime at all yet)."""
    try:
        return runtime().redis
    except RuntimeError:
        return None


def _on_shutting_down(sig: str = "", how: str = "", exitcode: int = 0, **_: Any) -> None:
    _stopping.set()
    hostname = _.get("sender")
    log.warning(
        "worker shutting down: running syncs will stop after their current page",
        extra={"signal": sig, "how": how, "hostname": str(hostname)},
    )
    client = _redis()
    if client is not None and hostname:
        try:
            client.set(_flag_key(str(hostname)), "1", ex=FLAG_SECONDS)
        except Exception:
            log.exception("could not set the stop flag for prefork children")


def _on_ready(sender: Any = None, **_: Any) -> None:
    """A (re)started worker clears the stop flag its previous life left for its hostname."""
    _stopping.clear()
    client = _redis()
    hostname = getattr(sender, "hostname", None)
    if client is not None and hostname:
        try:
            client.delete(_flag_key(str(hostname)))
        except redis.RedisError:
            log.warning("could not clear the stop flag", extra={"hostname": str(hostname)})


def install_handlers() -> None:
    """Connect the stop handlers to Celery's worker signals (once per process)."""
    signals.worker_shutting_down.connect(_on_shutting_down, weak=False, dispatch_uid="crs-stop")
    signals.worker_init.connect(_on_ready, weak=False, dispatch_uid="crs-init")
    signals.worker_ready.connect(_on_ready, weak=False, dispatch_uid="crs-ready")


def stopping() -> bool:
    """Whether the worker running this task was told to stop."""
    if _stopping.is_set():
        return True
    task = current_task
    hostname = getattr(getattr(task, "request", None), "hostname", None) if task else None
    client = _redis()
    if not hostname or client is None:
        return False
    try:
        return bool(client.exists(_flag_key(str(hostname))))
    except Exception:
        return False


def stop_point(job_id: str) -> None:
    """Between two pages: raise StopRequested if this worker is shutting down."""
    if stopping():
        raise errors.StopRequested(job_id)
