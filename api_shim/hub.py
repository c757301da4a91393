"""The shim's end of the job events: one Redis subscription per process, shared by every
request that waits (long polls, event streams) and by the caches it keeps fresh.

Waiting costs an asyncio queue, not a thread or a Redis connection, so a thousand waiting
polls hold nothing the next request needs. If Redis is unreachable, the hub retries in the
background and the waiters fall back to polling the store (`FALLBACK_POLL`): slower, never
wrong, since an event only says "look again".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import redis.asyncio as aioredis

from callrail_sync.events import pattern

log = logging.getLogger("callrail_sync.hub")
FALLBACK_POLL = 1.0
"""Seconds a waiter waits for an event before it reads the store anyway, while the hub is not
subscribed (events may be missed then)."""
QUIET_POLL = 15.0
"""The same while subscribed: events are not missed, so this is only a keep-alive's pace."""
RESYNC: dict[str, Any] = {"type": "resync"}
"""Handed to every waiter when the subscription is back: what happened meanwhile is unknown."""
Event = dict[str, Any]
Listener = Callable[[Event], None]


class EventHub:
    """Fans the job events of every owner out to the waiters of this process."""

    def __init__(self, redis_url: str, prefix: str = "callrail") -> None:
        self._redis_url = redis_url
        self._pattern = pattern(prefix)
        self._waiters: dict[str, set[asyncio.Queue[Event]]] = {}
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def listen(self, listener: Listener) -> None:
        """Call `listener` with every event (the caches drop what an event makes stale)."""
        self._listeners.append(listener)

    @contextlib.asynccontextmanager
    async def subscribe(self, owner: str) -> AsyncIterator[asyncio.Queue[Event]]:
        """A queue of the owner's events from now on; subscribe before reading the state you
        wait on, so that no change falls between the read and the wait."""
        self.start()
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=1000)
        self._waiters.setdefault(owner, set()).add(queue)
        try:
            yield queue
        finally:
            waiters = self._waiters.get(owner)
            if waiters is not None:
                waiters.discard(queue)
                if not waiters:
                    del self._waiters[owner]

    @property
    def poll_every(self) -> float:
        """How long a waiter may rely on events before reading the store itself (spread, so
        a thousand waiters do not all read at the same moment)."""
        every = QUIET_POLL if self.connected.is_set() else FALLBACK_POLL
        return every * random.uniform(0.75, 1.25)

    def start(self) -> None:
        """Subscribe now (the app's startup), so the caches hear of changes from the first
        request on; `subscribe` also starts it if it is not running."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="event-hub")

    def dispatch(self, event: Event) -> None:
        for listener in self._listeners:
            listener(event)
        for queue in self._waiters.get(str(event.get("owner")), ()):
            with contextlib.suppress(asyncio.QueueFull):  # a stalled reader polls anyway
                queue.put_nowait(event)

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis went away: retry, the waiters poll meanwhile
                self.connected.clear()
                log.warning("event subscription lost", extra={"error": type(exc).__name__})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _consume(self) -> None:
        client = aioredis.Redis.from_url(self._redis_url, socket_keepalive=True)
        try:
            async with client.pubsub() as pubsub:
                await pubsub.psubscribe(self._pattern)
                self.connected.set()
                for queues in list(self._waiters.values()):  # look again: events were missed
                    for queue in queues:
                        with contextlib.suppress(asyncio.QueueFull):
                            queue.put_nowait(RESYNC)
                async for message in pubsub.listen():
                    if message.get("type") == "pmessage":
                        self.dispatch(json.loads(message["data"]))
        finally:
            await client.aclose()

    async def close(self) -> None:
        # Cancelled while it waits in `pubsub.listen()`, redis-py (8.2) sometimes swallows the
        # CancelledError and goes on listening (about one close in ten, when the subscription
        # is fresh): cancel again until the task has ended, or the app's shutdown never ends.
        task = self._task
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)
        if task is not None and not task.cancelled():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()
