"""Stream tickets: how a browser's EventSource, which cannot send headers, opens an event
stream without putting the JWT in a URL.

`POST /events/ticket` (with the bearer JWT) mints a random ticket that names its owner, is
good for the event streams only, expires within a minute (and never outlives the token it was
minted with), and is redeemed once: the first stream it opens takes it (an atomic GETDEL), so
a ticket copied from a URL or a log opens nothing. A ticket minted with `{"stream": path}`
opens only that stream. Tickets live in Redis (any shim process accepts them; only their hash
is stored, with the owner, the stream and the token's expiry).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from api_shim.answers import PREFIX

TICKET_SECONDS = 60
STREAM_PATH = re.compile(re.escape(PREFIX) + r"/(events|jobs/[A-Za-z0-9_.-]{1,64}/events)")
"""The streams a ticket may name: every job change, or one job's progress."""


@dataclass(frozen=True)
class StreamCaller:
    """Who opened an event stream (by bearer token, or by a ticket redeemed), and when the token
    it was opened with (or the ticket was minted with) expires: the stream ends then."""

    owner: str
    expires_at: float


def _name(prefix: str, ticket: str) -> str:
    return f"{prefix}:ticket:" + hashlib.sha256(ticket.encode()).hexdigest()


class Tickets:
    """Mint and redeem stream tickets."""

    def __init__(self, redis_url: str, prefix: str = "callrail") -> None:
        self._redis = aioredis.Redis.from_url(redis_url)
        self._prefix = prefix

    async def mint(self, owner: str, token_expires_at: float, stream: str | None = None) -> str:
        ticket = "tkt_" + secrets.token_urlsafe(24)
        ttl = max(1, min(TICKET_SECONDS, int(token_expires_at - time.time())))
        value = {"owner": owner, "stream": stream, "exp": token_expires_at}
        await self._redis.set(_name(self._prefix, ticket), json.dumps(value), ex=ttl)
        return ticket

    async def redeem(self, ticket: str, path: str) -> StreamCaller | None:
        """The ticket's owner and token expiry, if it is unexpired, unused and good for the
        stream at `path`; it is used up either way."""
        found = await self._redis.getdel(_name(self._prefix, ticket))
        if not isinstance(found, bytes):
            return None
        value = json.loads(found)
        if value.get("stream") not in (None, path) or float(value["exp"]) <= time.time():
            return None
        return StreamCaller(str(value["owner"]), float(value["exp"]))
