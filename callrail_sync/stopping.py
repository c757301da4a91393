"""Whether the worker running this task was told to stop.

The signal reaches the worker's main process only (`worker/shutdown.py` handles it). Threads of
that process see an Event; prefork children, which get no signal, see a flag the main process
sets in Redis for its hostname. Syncs check both between pages (`stop_point`).
"""

from __future__ import annotations

import logging
import threading

import redis
from celery import current_task

from callrail_sync import errors
from callrail_sync.runtime import runtime

log = logging.getLogger("callrail_sync.shutdown")
_stopping = threading.Event()
FLAG_SECONDS = 3600


def _flag_key(hostname: str) -> str:
    return f"{runtime().settings.redis_prefix}:stopping:{hostname}"


def _redis() -> redis.Redis | None:
    """The runtime's Redis; None before a runtime is configured."""
    try:
        return runtime().redis
    except RuntimeError:
        return None


def mark_stopping(hostname: str | None) -> None:
    """This process stops, and so do the prefork children of `hostname`."""
    _stopping.set()
    client = _redis()
    if client is not None and hostname:
        try:
            client.set(_flag_key(hostname), "1", ex=FLAG_SECONDS)
        except Exception:
            log.exception("could not set the stop flag for prefork children")


def clear_stopping(hostname: str | None) -> None:
    """A (re)started worker clears the stop flag its previous life left for its hostname."""
    _stopping.clear()
    client = _redis()
    if client is not None and hostname:
        try:
            client.delete(_flag_key(hostname))
        except redis.RedisError:
            log.warning("could not clear the stop flag", extra={"hostname": hostname})


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
