"""The receiver's writes, grouped: deliveries verified while the previous write was in flight
go to MongoDB together (one insert, one count update, one normalizing task), so a burst of
deliveries costs a few round trips, not three per delivery. Each delivery is answered as soon
as the insert that holds it is acknowledged (a 2xx always means it is kept); counting and
queueing follow.

Receivers (the company's owners and signing key) are read through a short cache; a delivery
that does not verify with the cached key reads the store again before anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool

from callrail_sync.stores import Stores
from callrail_sync.stores.inbox import Kept
from callrail_sync.stores.receivers import Counted, Receiver
from tasks.names import TaskName

log = logging.getLogger("callrail_sync.inbound")
MAX_BATCH = 500
RECEIVER_SECONDS = 10.0
"""How long a receiver read from the store is used without reading it again."""
QueueTask = Callable[[str, list[str]], None]


class InboxWriter:
    def __init__(self, stores: Stores, queue_task: QueueTask) -> None:
        self._stores = stores
        self._queue_task = queue_task
        self._pending: list[tuple[Kept, asyncio.Future[bool]]] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._followups: set[asyncio.Task[None]] = set()
        self._receivers: dict[str, tuple[float, Receiver]] = {}

    async def receiver(self, company_id: str, fresh: bool = False) -> Receiver | None:
        """The company's receiver (cached for RECEIVER_SECONDS unless `fresh`)."""
        cached = self._receivers.get(company_id)
        if cached is not None and not fresh and cached[0] > time.monotonic():
            return cached[1]
        found = await run_in_threadpool(self._stores.receivers.get, company_id)
        if found is not None:
            self._receivers[company_id] = (time.monotonic() + RECEIVER_SECONDS, found)
        else:
            self._receivers.pop(company_id, None)
        return found

    async def keep(self, delivery: Kept) -> bool:
        """Write one verified delivery (with whatever else is waiting); True if it is new."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._pending.append((delivery, future))
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._wake = asyncio.Event()  # of this loop
            self._task = loop.create_task(self._run(), name="inbox-writer")
        assert self._wake is not None
        self._wake.set()
        return await future

    async def _run(self) -> None:
        assert self._wake is not None
        wake = self._wake
        try:
            while True:
                await wake.wait()
                wake.clear()
                while self._pending:
                    await self._write_one_batch()
        finally:  # cancelled or broken: no delivery may wait for an answer that never comes
            for _, future in self._pending:
                if not future.done():
                    future.set_exception(RuntimeError("the inbox writer stopped"))
            self._pending.clear()

    async def _write_one_batch(self) -> None:
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        deliveries = [d for d, _ in batch]
        try:
            fresh = await run_in_threadpool(self._stores.inbox.accept_many, deliveries)
        except Exception as exc:  # nothing in this batch may be answered as kept
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), new in zip(batch, fresh, strict=True):
            if not future.done():
                future.set_result(new)  # kept: answered now
        # Counting and queueing follow, off the path of the next batch (a broker that does
        # not answer must not hold the next deliveries' answers).
        followup = asyncio.get_running_loop().create_task(
            run_in_threadpool(self._after, deliveries, fresh)
        )
        self._followups.add(followup)
        followup.add_done_callback(self._followups.discard)

    def _after(self, batch: list[Kept], fresh: list[bool]) -> None:
        """Count the batch's deliveries and queue the new ones for normalizing."""
        counts: dict[str, dict[Counted, int]] = defaultdict(lambda: defaultdict(int))
        for delivery, new in zip(batch, fresh, strict=True):
            counts[delivery.company_id]["received" if new else "duplicates"] += 1
        with contextlib.suppress(Exception):  # counts are for operators; the data is kept
            self._stores.receivers.count_many(counts)
        keys = [delivery.key for delivery, new in zip(batch, fresh, strict=True) if new]
        if keys:
            try:
                self._queue_task(TaskName.NORMALIZE, keys)
            except Exception as exc:  # kept in the inbox: beat queues them again
                log.warning("deliveries kept, normalizing not queued", extra={"error": str(exc)})

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._followups:
            await asyncio.gather(*self._followups, return_exceptions=True)
