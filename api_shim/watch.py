"""Waiting for a job without holding a thread: the store says where it is, the events say when
to look again (and a fallback poll covers a lost event or a Redis outage)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Annotated

from fastapi import Depends
from starlette.concurrency import run_in_threadpool

from api_shim.deps import JOB_NOT_FOUND, Services, StreamOwner, Svc
from api_shim.hub import RESYNC, Event
from callrail_sync.errors import NotFound
from callrail_sync.job import Job


async def read_job(svc: Services, owner: str, job_id: str) -> Job:
    """The owner's job from the store (in a thread), or 404."""
    job = await run_in_threadpool(svc.runtime.stores.jobs.get, job_id, owner)
    if job is None:
        raise NotFound(JOB_NOT_FOUND)
    return job


async def owned_job(job_id: str, caller: StreamOwner, svc: Svc) -> Job:
    """The caller's job of the path (by token or stream ticket), or 404 before any stream."""
    return await read_job(svc, caller.owner, job_id)


OwnedJob = Annotated[Job, Depends(owned_job)]


async def watch(svc: Services, owner: str, job_id: str) -> AsyncGenerator[Job | None, None]:
    """The job now, then again each time it changes, until it is final. A quiet spell
    yields None (streams send their keep-alives then)."""
    async with svc.hub.subscribe(owner) as events:  # before the read: no change slips by
        seen = await read_job(svc, owner, job_id)
        yield seen
        while not seen.is_final:
            job = await next_change(events, job_id, svc.hub.poll_every)
            if job is None:  # quiet, or the subscription was lost: ask the store
                job = await read_job(svc, owner, job_id)
            if (job.status, job.updated_at) == (seen.status, seen.updated_at):
                yield None
                continue
            if job.updated_at >= seen.updated_at:
                seen = job
                yield job


async def next_change(events: asyncio.Queue[Event], job_id: str, timeout: float) -> Job | None:
    """The job as the next event about it carries it; None when `timeout` passes first, or
    when the hub asks every waiter to look again."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (left := deadline - loop.time()) > 0:
        try:
            event = await asyncio.wait_for(events.get(), left)
        except TimeoutError:
            return None
        if event is RESYNC:
            return None
        if event.get("job_id") == job_id and isinstance(event.get("job"), dict):
            return Job.model_validate(event["job"])
    return None
