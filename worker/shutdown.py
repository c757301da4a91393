"""Graceful stop: a worker told to stop (SIGTERM, a warm shutdown) finishes the page in flight,
then hands the rest of each running sync back to the queue; the next worker resumes it from
the pages already stored (the flag the syncs read is `callrail_sync/stopping.py`).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

from callrail_sync.stopping import clear_stopping, mark_stopping

log = logging.getLogger("callrail_sync.shutdown")


def _on_shutting_down(sig: str = "", how: str = "", exitcode: int = 0, **kw: Any) -> None:
    hostname = kw.get("sender")
    log.warning(
        "worker shutting down: running syncs will stop after their current page",
        extra={"signal": sig, "how": how, "hostname": str(hostname)},
    )
    mark_stopping(str(hostname) if hostname else None)


def _on_ready(sender: Any = None, **_: Any) -> None:
    hostname = getattr(sender, "hostname", None)
    clear_stopping(str(hostname) if hostname else None)


def install_handlers() -> None:
    """Connect the stop handlers to Celery's worker signals (once per process)."""
    signals.worker_shutting_down.connect(_on_shutting_down, weak=False, dispatch_uid="crs-stop")
    signals.worker_init.connect(_on_ready, weak=False, dispatch_uid="crs-init")
    signals.worker_ready.connect(_on_ready, weak=False, dispatch_uid="crs-ready")
