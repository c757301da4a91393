"""Stream tickets: how a browser's EventSource, which cannot send headers, opens an event
stream without putting the JWT in a URL.

`POST /events/ticket` (with the bearer JWT) mints a random ticket that names its owner, is
good for the event streams only, and expires within a minute. Tickets live in Redis (so any
shim process accepts them; only their hash is stored).
"""

from __future__ import annotations

import hashlib
import secrets

import redis.asyncio as aioredis

TICKET_SECONDS = 60


def _name(prefix: str, ticket: str) -> str:
    return f"{prefix}:ticket:" + hashlib.sha256(ticket.encode()).hexdigest()


class Tickets:
    """Mint and redeem stream tickets."""

    def __init__(self, redis_url: str, prefix: str = "callrail") -> None:
        self._redis = aioredis.Redis.from_url(redis_url)
        self._prefix = prefix

    async def mint(self, owner: str) -> str:
        ticket = "tkt_" + secrets.token_urlsafe(24)
        await self._redis.set(_name(self._prefix, ticket), owner, ex=TICKET_SECONDS)
        return ticket

    async def owner(self, ticket: str) -> str | None:
        """The owner the ticket was minted for, while it has not expired."""
        found = await self._redis.get(_name(self._prefix, ticket))
        return found.decode() if isinstance(found, bytes) else None
