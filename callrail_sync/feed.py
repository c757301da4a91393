"""The change feed as callers see it: its query's words, opaque cursors, a page read from the
store its kind is kept in. Shared by the shim (`GET /changes`, whose `ChangeItem` is the shape
of a change) and the command line (`callrail-sync changes`).

A cursor names a place in one feed (owner, kind, CallRail account): the number of the last
change read, with a tag of the feed, so that a cursor of one feed is refused by another.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from callrail_sync import cursors
from callrail_sync.errors import ValidationFailed
from callrail_sync.stores import Stores
from callrail_sync.stores.changes import ACTIONS, Action, ChangePage, FeedQuery
from callrail_sync.streams import STREAMS

MAX_LIMIT = 1000
MAX_SEQ = 2**63
"""Change numbers are 64-bit integers in MongoDB."""
BAD_CURSOR = "cursor is not valid for this feed (use the next_cursor of the same kind and account)."


def _tag(query: FeedQuery) -> str:
    return hashlib.sha256(query.feed.encode()).hexdigest()[:12]


def encode_cursor(query: FeedQuery, after: int) -> str:
    return cursors.encode({"f": _tag(query), "s": after})


def decode_cursor(query: FeedQuery, cursor: str) -> int:
    """The change number a cursor of this feed stands for; ValidationFailed otherwise."""

    def valid(f: Any) -> bool:
        return f["f"] == _tag(query) and isinstance(f["s"], int) and 0 <= f["s"] < MAX_SEQ

    return int(cursors.decode(cursor, valid, BAD_CURSOR)["s"])


def parse_actions(raw: str | None) -> frozenset[Action]:
    """`added,updated,deleted` (any of them; all when not given)."""
    if raw is None or not raw.strip():
        return frozenset(ACTIONS)
    wanted = {part.strip() for part in raw.split(",") if part.strip()}
    chosen = frozenset(a for a in ACTIONS if a in wanted)
    if not wanted or len(chosen) != len(wanted):
        raise ValidationFailed(f"filter must be a comma-separated list of: {', '.join(ACTIONS)}.")
    return chosen


def parse_time(raw: str | None, name: str) -> datetime | None:
    """An ISO 8601 time (UTC when it names no zone)."""
    if raw is None or not raw.strip():
        return None
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
        # In UTC, as MongoDB keeps it: an offset that leaves years 1–9999 is refused here.
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValidationFailed(f"{name} must be an ISO 8601 time.") from None


def read_changes(stores: Stores, query: FeedQuery) -> ChangePage:
    """One page of a feed: a stream's from its records, the listings' from their snapshots."""
    if STREAMS[query.kind].store == "records":
        return stores.streams.changes(
            query.feed, query.after, query.actions, query.limit, query.modified_after
        )
    return stores.changes.read(query)
