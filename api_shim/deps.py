"""What a route needs, handed in by FastAPI: the app's services and the caller.

Every dependency here is `async` and does no blocking I/O: FastAPI would run a plain `def`
one in a worker thread, a hop per request for nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from api_shim.admission import Admission, StreamSlots
from api_shim.auth import Authenticator
from api_shim.cache import ShimCache
from api_shim.hub import EventHub
from api_shim.inbox_writer import InboxWriter
from api_shim.tickets import StreamCaller, Tickets
from callrail_sync import errors
from callrail_sync.budget import SlidingWindows
from callrail_sync.runtime import Runtime
from tasks.submit import JobQueue


@dataclass
class Services:
    """The parts `create_app` wired for this app."""

    runtime: Runtime
    queue: JobQueue
    auth: Authenticator
    cache: ShimCache
    hub: EventHub
    tickets: Tickets
    admission: Admission
    streams: StreamSlots
    """The event streams each owner has open (STREAMS_PER_OWNER)."""
    inbox: InboxWriter
    key_readings: SlidingWindows
    """How often failed signatures may make us read signing keys again, per CallRail account
    (`SlidingWindows`, on keys of its own)."""
    inbound_failures: SlidingWindows
    """Refused deliveries per source address and company (INBOUND_FAILURES_PER_MINUTE)."""

    def _claim_key(self, name: str) -> str:
        return f"{self.runtime.settings.redis_prefix}:claim:{name}"

    async def claim(self, name: str, seconds: float) -> bool:
        """True for the first caller in `seconds` (across shim processes)."""
        key, ttl = self._claim_key(name), max(1, int(seconds))
        took = await run_in_threadpool(
            self.runtime.redis.set, key, repr(time.time()), nx=True, ex=ttl
        )
        return bool(took)

    async def claimed_at(self, name: str) -> float | None:
        """When the claim `name` that holds now was taken (None: nobody holds it)."""
        value = await run_in_threadpool(self.runtime.redis.get, self._claim_key(name))
        return float(value) if value is not None else None


async def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


Svc = Annotated[Services, Depends(services)]


BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearerAuth",
    bearerFormat="JWT",
    description="HS256 or RS256; claim `account_id` is the DashClicks account (24 hex), "
    "`exp` is required.",
)
"""For the document only (Swagger UI sends the token): the header is read by `auth`, which
has a message of its own for each way it can be wrong."""
Bearer = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


async def current_owner(request: Request, svc: Svc, _: Bearer) -> str:
    """The DashClicks account of the bearer token."""
    return svc.auth.session(request.headers.get("Authorization"))[0]


async def session(request: Request, svc: Svc, _: Bearer) -> tuple[str, float]:
    """The caller and when its bearer token expires."""
    return svc.auth.session(request.headers.get("Authorization"))


async def stream_caller(
    request: Request,
    svc: Svc,
    _: Bearer,
    ticket: Annotated[
        str | None, Query(description="a stream ticket (POST /events/ticket), for EventSource")
    ] = None,
) -> StreamCaller:
    """The caller of an event stream: the bearer token, or a stream ticket in the query
    (a browser's EventSource cannot send headers; the JWT never goes in a URL). A ticket is
    used up by the stream it opens."""
    if ticket is None:
        return StreamCaller(*svc.auth.session(request.headers.get("Authorization")))
    redeemed = await svc.tickets.redeem(ticket, request.url.path)
    if redeemed is None:
        raise errors.Unauthenticated("Invalid or expired stream ticket.")
    return redeemed


Owner = Annotated[str, Depends(current_owner)]
StreamOwner = Annotated[StreamCaller, Depends(stream_caller)]
Session = Annotated[tuple[str, float], Depends(session)]


async def keyed_owner(owner: Owner, svc: Svc) -> str:
    """The caller, who has a usable CallRail key: the spec checks it before anything else of
    the request (so a route's query and body are read after it)."""
    key = await svc.cache.key_state(owner)
    if key.rejected_at is not None:
        raise errors.ApiKeyRejected(key.rejected_at)  # no job: it would fail the same way
    if not key.usable:
        raise errors.ApiKeyNotFound()
    return owner


ACCOUNT_NOT_FOUND = "CallRail account not found for this API key."
JOB_NOT_FOUND = "Job not found."


async def require_account(svc: Services, owner: str, account: str) -> None:
    """A CallRail account that a fresh accounts snapshot of the caller does not list is a 404
    at once (no job, no CallRail request); without a fresh snapshot, the job finds out."""
    max_age = svc.runtime.settings.snapshot_max_age
    if await svc.cache.lists_account(owner, account, max_age) is False:
        raise errors.NotFound(ACCOUNT_NOT_FOUND)


async def stream_slot(caller: StreamOwner, svc: Svc) -> str:
    """A slot for one more event stream of the caller (STREAMS_PER_OWNER), or 429."""
    return await svc.streams.take(caller.owner)


KeyedOwner = Annotated[str, Depends(keyed_owner)]
StreamSlot = Annotated[str, Depends(stream_slot)]
