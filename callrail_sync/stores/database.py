"""The one MongoDB handle every store shares, and the small helpers they all use.

Nothing outside `callrail_sync.stores` imports pymongo: the stores are the only room that knows
Mongo.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import ConnectionFailure, NotPrimaryError

from callrail_sync.config import Settings

Db = Database[dict[str, Any]]
UNAVAILABLE: tuple[type[Exception], ...] = (ConnectionFailure, NotPrimaryError)
"""What the driver raises while the server cannot be reached or is stepping down: worth
trying again shortly, never the request's fault (the shim answers 503, a job retries)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def open_database(settings: Settings) -> Db:
    """The database for these settings, on the MongoDB server at MONGO_URL."""
    if not settings.mongo_url:
        raise MongoUrlMissing(MONGO_URL_MISSING)
    timeout_ms = int(settings.mongo_timeout * 1000)
    client: MongoClient[dict[str, Any]] = MongoClient(
        settings.mongo_url,
        tz_aware=True,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
    )
    return client[settings.mongo_db]


MONGO_URL_MISSING = "MONGO_URL is not set: the service needs a MongoDB server"


class MongoUrlMissing(RuntimeError):
    """No MONGO_URL: there is no store to open."""


IN_READ = 50
"""Ids one `$in` read asks for: SecantusDB checks each document it finds against the whole
list, so a read of n ids that exist costs n² (4,000 of them: ~6 s; in reads of 50, ~0.4 s)."""


def by_ids(
    collection: Any, ids: list[str], projection: dict[str, Any] | None = None
) -> Iterator[dict[str, Any]]:
    """The documents of these `_id`s, in reads of `IN_READ`."""
    for start in range(0, len(ids), IN_READ):
        yield from collection.find({"_id": {"$in": ids[start : start + IN_READ]}}, projection)
