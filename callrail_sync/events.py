"""Job events: every change of a job, published through Redis after it is written to Mongo.

Mongo stays the source of truth: an event carries the job exactly as it was just written, and a
lost event (Redis down, a subscriber reconnecting) costs a waiter a read of the store, never a
wrong answer. One channel per owner: a shim process subscribes once to all of them and hands each
event to the requests of that owner (`api_shim/hub.py`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis

from callrail_sync.job import Job

log = logging.getLogger("callrail_sync.events")


def channel(owner: str, prefix: str = "callrail") -> str:
    """The owner's channel (`prefix`: the settings' `redis_prefix`)."""
    return f"{prefix}:events:{owner}"


def pattern(prefix: str = "callrail") -> str:
    """Every owner's channel."""
    return f"{prefix}:events:*"


def event_of(job: Job) -> dict[str, Any]:
    """What an event says: which job, of whom, and the job as it was just written (so a
    waiter can answer without reading it back)."""
    return {
        "job_id": job.id,
        "owner": job.owner,
        "type": job.type.value,
        "status": job.status.value,
        "callrail_account_id": job.params.callrail_account_id,
        "job": job.model_dump(mode="json"),
    }


def publish_call(
    client: redis.Redis, prefix: str, owner: str, view: dict[str, Any], kind: str = "call"
) -> None:
    """Tell the owner's event stream of a call event (already stored: a lost one costs
    nothing but the push; `GET /calls` has it)."""
    try:
        message = {"type": "call", "kind": kind, "owner": owner, "call": view}
        client.publish(channel(owner, prefix), json.dumps(message))
    except redis.RedisError as exc:
        log.warning(
            "call event not published", extra={"event_id": view.get("id"), "error": str(exc)}
        )


class JobEvents:
    """Publishes job changes to Redis (the jobs store's `on_change`)."""

    def __init__(self, client: redis.Redis, prefix: str = "callrail") -> None:
        self._redis, self._prefix = client, prefix

    def __call__(self, job: Job) -> None:
        try:
            self._redis.publish(channel(job.owner, self._prefix), json.dumps(event_of(job)))
        except redis.RedisError as exc:
            # The write is done and true; waiters find it at their next poll.
            log.warning("job event not published", extra={"job_id": job.id, "error": str(exc)})
