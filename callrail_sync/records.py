"""Records of every stream as callers read them: the query's checks, its cursor, the page and
the calls summary. Shared by the shim (`GET /records/{stream}`, `/records/calls/summary`) and
the command line (`callrail-sync records`). Nothing here asks CallRail anything: pages and
totals come from our own store (`callrail_sync/stores/streams.py`, and the snapshots for
accounts and companies).

A cursor is the sort key of the last record shown, tagged with the feed and the query (its
filters, range and sort), so a cursor is refused by any other query.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from callrail_sync.errors import ValidationFailed
from callrail_sync.ids import is_callrail_account_id, is_callrail_id
from callrail_sync.stores import Stores
from callrail_sync.stores.snapshots import Kind, PageQuery, as_utc
from callrail_sync.stores.streams import COUNTERS, RecordQuery, feed_id, sort_text, summarize
from callrail_sync.streams import STREAMS, Stream

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
GROUPS = ("source", "campaign", "keywords", "company", "day", "week", "month")
SUMMARY_DAYS = 30
CHOICES: dict[str, tuple[str, ...]] = {
    "answer_status": ("answered", "missed", "voicemail"),
    "direction": ("inbound", "outbound"),
    "lead_status": ("good_lead", "not_a_lead", "not_scored"),
}
BAD_CURSOR = "cursor is not valid for this query (use the next_cursor of the same query)."
MSG_ACCOUNT = "account_id is required for this stream."


def unknown_stream(name: str) -> str:
    return f"Unknown stream: {name[:40]}. Streams: {', '.join(STREAMS)}."


@dataclass(frozen=True)
class RecordsRequest:
    """A checked request for one page of a stream's records."""

    stream: Stream
    owner: str
    account: str | None
    query: RecordQuery
    tag: str
    """What the cursor is bound to: the feed and everything but the cursor."""

    @property
    def cache_key(self) -> tuple[Any, ...]:
        q = self.query
        return (self.tag, q.after, q.limit)


def parse_time(raw: str | None, name: str) -> datetime | None:
    """An ISO 8601 time with an offset (`Z` counts), in UTC."""
    if raw is None or not raw.strip():
        return None
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise ValidationFailed(f"{name} must be an ISO 8601 time with an offset.")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValidationFailed(f"{name} must be an ISO 8601 time with an offset.") from None


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not re.fullmatch(r"[0-9]{1,7}", raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise ValidationFailed(f"limit must be a whole number between 1 and {MAX_LIMIT}.")
    return int(raw)


def _id(raw: str | None, name: str) -> str | None:
    if raw is None or raw == "":
        return None
    shape = is_callrail_account_id if name == "account_id" else is_callrail_id
    if not shape(raw):
        raise ValidationFailed(f"{name} is not a valid id.")
    return raw


def _text(raw: str, name: str) -> str:
    if len(raw) > 200 or any(ord(c) < 32 for c in raw):
        raise ValidationFailed(f"{name} must be at most 200 characters, without control codes.")
    return raw


def _filters(stream: Stream, params: dict[str, str]) -> tuple[tuple[str, Any], ...]:
    chosen: list[tuple[str, Any]] = []
    every = {"answer_status", "direction", "source", "first_call", "lead_status", "tag"}
    for name in sorted(every & set(params)):
        raw = params[name]
        if name not in stream.filters:
            raise ValidationFailed(f"{name} filters calls only.")
        if name in CHOICES:
            if raw not in CHOICES[name]:
                raise ValidationFailed(f"{name} must be one of: {', '.join(CHOICES[name])}.")
            chosen.append((name, raw))
        elif name == "first_call":
            if raw not in ("true", "false"):
                raise ValidationFailed("first_call must be true or false.")
            chosen.append((name, raw == "true"))
        else:
            chosen.append((name, _text(raw, name)))
    return tuple(chosen)


def _sort(stream: Stream, raw: str | None) -> tuple[str, bool]:
    default = f"-{stream.time_field}" if stream.time_field else "name"
    value = (raw or default).strip()
    descending = value.startswith("-")
    name = value.lstrip("-")
    if name not in stream.sortable:
        allowed = ", ".join(stream.sortable)
        raise ValidationFailed(f"sort must be one of: {allowed} (prefix - for descending).")
    return name, descending


def records_request(owner: str, name: str, params: dict[str, str]) -> RecordsRequest:
    """A page request from query parameters, or the ValidationFailed that refuses it. An
    unknown stream is a LookupError (the shim answers 404)."""
    stream = STREAMS.get(name)
    if stream is None:
        raise LookupError(unknown_stream(name))
    account = _id(params.get("account_id"), "account_id")
    if stream.account_scoped and account is None:
        raise ValidationFailed(MSG_ACCOUNT)
    company = _id(params.get("company_id"), "company_id")
    since = parse_time(params.get("since"), "since")
    until = parse_time(params.get("until"), "until")
    if since is not None and until is not None and until <= since:
        raise ValidationFailed("until must be after since.")
    if (since or until) and stream.time_field is None:
        raise ValidationFailed(f"{stream.name} have no time: since and until do not apply.")
    sort, descending = _sort(stream, params.get("sort"))
    search = params.get("search")
    search = _text(search.strip(), "search") if search and search.strip() else None
    query = RecordQuery(
        feed=feed_id(owner, stream.name, account or "-"),
        stream=stream,
        since=since,
        until=until,
        company_id=company,
        filters=_filters(stream, params),
        search=search,
        sort=sort,
        descending=descending,
        limit=_limit(params.get("limit")),
    )
    shape = [query.feed, since, until, company, query.filters, search, sort, descending]
    tag = hashlib.sha256(repr(shape).encode()).hexdigest()[:16]
    cursor = params.get("cursor")
    if cursor:
        query = RecordQuery(**{**query.__dict__, "after": decode_cursor(tag, cursor)})
    return RecordsRequest(stream, owner, account, query, tag)


def encode_cursor(tag: str, last: tuple[Any, ...]) -> str:
    raw = json.dumps({"q": tag, "k": list(last)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(tag: str, cursor: str) -> tuple[Any, ...]:
    try:
        fields = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        ok = fields["q"] == tag and isinstance(fields["k"], list) and fields["k"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise ValidationFailed(BAD_CURSOR)
    return tuple(fields["k"])


def read_records(stores: Stores, request: RecordsRequest) -> dict[str, Any]:
    """The page a request asks for, as the API answers it."""
    stream, query = request.stream, request.query
    if stream.store == "records":
        page = stores.streams.read(query)
        records, has_more, last = page.records, page.has_more, page.last
    else:
        records, has_more, last = _snapshot_page(stores, request)
    cursor = encode_cursor(request.tag, last) if has_more and last else None
    return {
        "stream": stream.name,
        "account_id": request.account,
        "records": records,
        "next_cursor": cursor,
        "has_more": has_more,
    }


def _snapshot_page(
    stores: Stores, request: RecordsRequest
) -> tuple[list[dict[str, Any]], bool, tuple[Any, ...] | None]:
    """Accounts and companies from their current snapshot (a few thousand at most): filtered,
    sorted and cut here, by the same keyset as the other streams."""
    stream, q = request.stream, request.query
    kind: Kind = "accounts" if stream.name == "accounts" else "companies"
    head = stores.snapshots.current(request.owner, kind, request.account)
    if head is None:
        return [], False, None
    every = PageQuery(per_page=max(1, head.counts.get("records", 0)), sort="id")
    rows = stores.snapshots.read_page(kind, head.snapshot_id, every)
    name = q.sort or "id"
    # Records without a value come last, ascending and descending alike (docs/api.md).
    none = "" if q.descending else "\uffff"

    def key(row: dict[str, Any]) -> tuple[str, str]:
        value = row.get(name)
        if name in ("created_at", "disabled_at"):
            moment = as_utc(value)
            value = moment.isoformat() if moment else None
        return (sort_text(value) if value is not None else none, str(row["id"]))

    def keep(row: dict[str, Any]) -> bool:
        moment = as_utc(row.get(stream.time_field)) if stream.time_field else None
        if q.since is not None and (moment is None or moment < q.since):
            return False
        if q.until is not None and (moment is None or moment >= q.until):
            return False
        if q.company_id is not None and row.get("id") != q.company_id:
            return False
        return not q.search or q.search.lower() in str(row.get("name") or "").lower()

    rows = sorted(filter(keep, rows), key=key, reverse=q.descending)
    if q.after is not None:
        after = tuple(q.after)
        rows = [r for r in rows if (key(r) < after if q.descending else key(r) > after)]
    page = rows[: q.limit]
    return page, len(rows) > q.limit, key(page[-1]) if page else None


@dataclass(frozen=True)
class SummaryRequest:
    owner: str
    account: str
    company: str | None
    first: date
    last: date
    group_by: str | None

    @property
    def feed(self) -> str:
        return feed_id(self.owner, "calls", self.account)


def summary_request(owner: str, params: dict[str, str], now: datetime) -> SummaryRequest:
    """Whole days, each call on its own day in its company's time zone: from the date of
    `since` to the day before the date of `until` (or `until`'s date itself when it is past
    midnight), each date as written in its own offset; without them, the last 30 days."""
    account = _id(params.get("account_id"), "account_id")
    if account is None:
        raise ValidationFailed("account_id is required.")
    company = _id(params.get("company_id"), "company_id")
    group_by = params.get("group_by") or None
    if group_by is not None and group_by not in GROUPS:
        raise ValidationFailed(f"group_by must be one of: {', '.join(GROUPS)}.")
    since_raw, until_raw = params.get("since"), params.get("until")
    since, until = parse_time(since_raw, "since"), parse_time(until_raw, "until")
    if since is not None and until is not None and until <= since:
        raise ValidationFailed("until must be after since.")
    last = _as_written(until_raw) if until is not None else now.date()
    if until is not None and until_raw is not None:
        written = datetime.fromisoformat(until_raw.strip().replace("Z", "+00:00"))
        if written.time() == time.min:
            last -= timedelta(days=1)
    first = _as_written(since_raw) if since is not None else last - timedelta(SUMMARY_DAYS - 1)
    if first > last:
        raise ValidationFailed("since and until hold no whole day.")
    if (last - first).days > 800:
        raise ValidationFailed("since and until may be at most 800 days apart.")
    return SummaryRequest(owner, account, company, first, last, group_by)


def _as_written(raw: str | None) -> date:
    assert raw is not None
    return datetime.fromisoformat(raw.strip().replace("Z", "+00:00")).date()


def summarize_calls(stores: Stores, request: SummaryRequest) -> dict[str, Any]:
    """Totals and groups from the calls' roll-ups: no call is read, no CallRail request."""
    by_day = request.group_by in ("day", "week")
    docs = stores.streams.rollups(
        request.feed, request.first, request.last, by_day=by_day, company=request.company
    )
    found = summarize(docs, request.group_by)
    groups = [
        {"key": key, **_shown(counts)}
        for key, counts in found["groups"].items()
        if counts.get("calls", 0) > 0
    ]
    if request.group_by in ("day", "week", "month"):
        groups.sort(key=lambda g: str(g["key"]))
    else:
        groups.sort(key=lambda g: (-int(g["calls"]), str(g["key"])))
    return {
        "account_id": request.account,
        "company_id": request.company,
        "since": request.first.isoformat(),
        "until": (request.last + timedelta(days=1)).isoformat(),
        "group_by": request.group_by,
        "total": _shown(found["total"]),
        "groups": groups,
    }


def _shown(counts: dict[str, int]) -> dict[str, Any]:
    calls = int(counts.get("calls", 0))
    shown: dict[str, Any] = {name: int(counts.get(name, 0)) for name in COUNTERS}
    duration = shown.pop("duration")
    shown["average_duration"] = round(duration / calls, 1) if calls else 0
    return shown
