"""Records of every stream as callers read them: the query's checks, its cursor, the page and
the calls summary. Shared by the shim (`GET /records/{stream}`, `/records/calls/summary`) and
the command line (`callrail-sync records`). Nothing here asks CallRail anything: pages and
totals come from our own store (`callrail_sync/stores/streams.py`, and the snapshots for
accounts and companies).

A cursor is the sort key of the last record shown, tagged with the feed and the query (its
filters, range and sort), so a cursor is refused by any other query.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, model_validator

from callrail_sync import cursors
from callrail_sync.errors import ValidationFailed
from callrail_sync.ids import is_callrail_account_id, is_callrail_id
from callrail_sync.stores import Stores
from callrail_sync.stores.snapshots import Kind, PageQuery, as_utc
from callrail_sync.stores.streams import (
    COUNTERS,
    DIMENSIONS,
    RecordQuery,
    feed_id,
    sort_text,
    summarize,
)
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


def _time(name: str) -> Callable[[Any], datetime | None]:
    """An ISO 8601 time with an offset (`Z` counts), kept as written (empty: none)."""

    def check(raw: Any) -> datetime | None:
        if raw is None or isinstance(raw, str) and not raw.strip():
            return None
        try:
            value = datetime.fromisoformat(str(raw).strip().replace("Z", "+00:00"))
            value.astimezone(UTC)  # a time at the end of the calendar cannot be in UTC
        except (ValueError, OverflowError):
            value = None
        if value is None or value.tzinfo is None:
            raise ValueError(f"{name} must be an ISO 8601 time with an offset.")
        return value

    return check


def _limit(raw: Any) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    text = str(raw)
    if not re.fullmatch(r"[0-9]{1,7}", text) or not 1 <= int(text) <= MAX_LIMIT:
        raise ValueError(f"limit must be a whole number between 1 and {MAX_LIMIT}.")
    return int(text)


def _id(name: str) -> Callable[[Any], str | None]:
    shape = is_callrail_account_id if name == "account_id" else is_callrail_id

    def check(raw: Any) -> str | None:
        if raw is None or raw == "":
            return None
        if not isinstance(raw, str) or not shape(raw):
            raise ValueError(f"{name} is not a valid id.")
        return raw

    return check


def _text(name: str) -> Callable[[Any], str | None]:
    def check(raw: Any) -> str | None:
        if raw is None or not str(raw).strip():
            return None
        value = str(raw).strip() if name == "search" else str(raw)
        if len(value) > 200 or any(ord(c) < 32 for c in value):
            raise ValueError(f"{name} must be at most 200 characters, without control codes.")
        return value

    return check


def _choice(name: str) -> Callable[[Any], str | None]:
    def check(raw: Any) -> str | None:
        if raw is None:
            return None
        if raw not in CHOICES[name]:
            raise ValueError(f"{name} must be one of: {', '.join(CHOICES[name])}.")
        return str(raw)

    return check


def _first_call(raw: Any) -> bool | None:
    if raw is None or isinstance(raw, bool):
        return raw
    if raw not in ("true", "false"):
        raise ValueError("first_call must be true or false.")
    return bool(raw == "true")


def _group(raw: Any) -> str | None:
    if raw is None or raw == "":
        return None
    if raw not in GROUPS:
        raise ValueError(f"group_by must be one of: {', '.join(GROUPS)}.")
    return str(raw)


def _doc(text: str) -> Any:
    return Field(None, description=text)


AccountId = Annotated[str | None, BeforeValidator(_id("account_id"))]
CompanyId = Annotated[str | None, BeforeValidator(_id("company_id"))]


class TimeRange(BaseModel):
    """`since` and `until`, each checked alone, then together."""

    since: Annotated[datetime | None, BeforeValidator(_time("since"))] = _doc(
        "ISO 8601 with an offset, inclusive"
    )
    until: Annotated[datetime | None, BeforeValidator(_time("until"))] = _doc(
        "ISO 8601 with an offset, exclusive"
    )

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError("until must be after since.")
        return self


class RecordsQuery(TimeRange):
    """The query of GET /records/{stream} (and `callrail-sync records`): each value checked
    alone here, with its own message; what depends on the stream in `records_request`."""

    account_id: AccountId = _doc("the CallRail account (all but accounts)")
    company_id: CompanyId = _doc("only this company's records")
    cursor: str | None = _doc("`next_cursor` of the previous page")
    limit: Annotated[int, BeforeValidator(_limit)] = Field(
        DEFAULT_LIMIT, description=f"1 to {MAX_LIMIT}, default {DEFAULT_LIMIT}"
    )
    sort: str | None = _doc("`field` or `-field` (default: newest first)")
    search: Annotated[str | None, BeforeValidator(_text("search"))] = _doc(
        "a case-insensitive substring"
    )
    answer_status: Annotated[str | None, BeforeValidator(_choice("answer_status"))] = _doc(
        "calls: answered, missed, voicemail"
    )
    direction: Annotated[str | None, BeforeValidator(_choice("direction"))] = _doc(
        "calls: inbound, outbound"
    )
    source: Annotated[str | None, BeforeValidator(_text("source"))] = _doc(
        "calls: the source, as CallRail names it"
    )
    first_call: Annotated[bool | None, BeforeValidator(_first_call)] = _doc("calls: true or false")
    lead_status: Annotated[str | None, BeforeValidator(_choice("lead_status"))] = _doc(
        "calls: good_lead, not_a_lead, not_scored"
    )
    tag: Annotated[str | None, BeforeValidator(_text("tag"))] = _doc("calls: a tag's name")


class SummaryQuery(TimeRange):
    """The query of GET /records/calls/summary."""

    account_id: AccountId = _doc("the CallRail account (required)")
    company_id: CompanyId = _doc("only this company's calls")
    group_by: Annotated[str | None, BeforeValidator(_group)] = _doc(", ".join(GROUPS))

    @model_validator(mode="before")
    @classmethod
    def _account(cls, given: Any) -> Any:
        if not isinstance(given, dict) or given.get("account_id") in (None, ""):
            raise ValueError("account_id is required.")
        return given


FILTERS = ("answer_status", "direction", "source", "first_call", "lead_status", "tag")


def _filters(stream: Stream, q: RecordsQuery) -> tuple[tuple[str, Any], ...]:
    chosen = [(name, getattr(q, name)) for name in sorted(FILTERS)]
    chosen = [(name, value) for name, value in chosen if value is not None]
    for name, _ in chosen:
        if name not in stream.filters:
            raise ValidationFailed(f"{name} filters calls only.")
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


def known_stream(name: str) -> Stream:
    """The stream of this name; an unknown one is a LookupError (the shim answers 404)."""
    stream = STREAMS.get(name)
    if stream is None:
        raise LookupError(unknown_stream(name))
    return stream


def records_request(owner: str, stream: Stream, q: RecordsQuery) -> RecordsRequest:
    """A page request from a checked query, or the ValidationFailed that refuses what the
    stream does not allow (an account it needs, a filter or sort it lacks, a bad cursor)."""
    account = q.account_id
    if stream.account_scoped and account is None:
        raise ValidationFailed(MSG_ACCOUNT)
    since = q.since.astimezone(UTC) if q.since else None
    until = q.until.astimezone(UTC) if q.until else None
    if (since or until) and stream.time_field is None:
        raise ValidationFailed(f"{stream.name} have no time: since and until do not apply.")
    sort, descending = _sort(stream, q.sort)
    query = RecordQuery(
        feed=feed_id(owner, stream.name, account or "-"),
        stream=stream,
        since=since,
        until=until,
        company_id=q.company_id,
        filters=_filters(stream, q),
        search=q.search,
        sort=sort,
        descending=descending,
        limit=q.limit,
    )
    shape = [query.feed, since, until, q.company_id, query.filters, q.search, sort, descending]
    tag = hashlib.sha256(repr(shape).encode()).hexdigest()[:16]
    if q.cursor:
        query = RecordQuery(**{**query.__dict__, "after": decode_cursor(tag, q.cursor)})
    return RecordsRequest(stream, owner, account, query, tag)


def encode_cursor(tag: str, last: tuple[Any, ...]) -> str:
    return cursors.encode({"q": tag, "k": list(last)})


def decode_cursor(tag: str, cursor: str) -> tuple[Any, ...]:
    def valid(f: Any) -> Any:
        return f["q"] == tag and isinstance(f["k"], list) and f["k"]

    return tuple(cursors.decode(cursor, valid, BAD_CURSOR)["k"])


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


def summary_request(owner: str, q: SummaryQuery, now: datetime) -> SummaryRequest:
    """Whole days, each call on its own day in its company's time zone: from the date of
    `since` to the day before the date of `until` (or `until`'s date itself when it is past
    midnight), each date as written in its own offset; without them, the last 30 days."""
    assert q.account_id is not None  # SummaryQuery requires it
    last = q.until.date() if q.until is not None else now.date()
    if q.until is not None and q.until.time() == time.min:
        last -= timedelta(days=1)
    first = q.since.date() if q.since is not None else last - timedelta(SUMMARY_DAYS - 1)
    if first > last:
        raise ValidationFailed("since and until hold no whole day.")
    if (last - first).days > 800:
        raise ValidationFailed("since and until may be at most 800 days apart.")
    return SummaryRequest(owner, q.account_id, q.company_id, first, last, q.group_by)


def summarize_calls(stores: Stores, request: SummaryRequest) -> dict[str, Any]:
    """Totals and groups from the calls' roll-ups: no call is read, no CallRail request."""
    by_day = request.group_by in ("day", "week")
    args = (request.feed, request.first, request.last)
    docs = stores.streams.rollups(*args, by_day=by_day, company=request.company)
    group = request.group_by
    if group in DIMENSIONS or (group == "company" and request.company is None):
        # The totals from `all`, the groups from the dimension's own documents.
        docs += stores.streams.rollups(*args, company=request.company, dim=group)
    found = summarize(docs, group)
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
