"""Reading a stream from CallRail: date windows, their parameters, their pages, and the daily
counts that size them.

Windows are whole days in one time zone stated in every request (`time_zone`, UTC by default:
CallRail's documentation gives the default two ways, accounts have no zone of their own, and
companies each have theirs). A window asks `start_date=D1&end_date=D2` with bare dates: both
bounds are inclusive (a bare `end_date` means 23:59:59 that day), so the next older window
ends the day before `D1`: windows never overlap and leave no gap. No request relies on the
`recent` default (the previous 7 days).

The backfill plans its windows newest first. For calls, the account's daily counts
(`calls/timeseries.json`, at most 200 days a request) size each window to about
`WINDOW_PAGES` pages (of `CALLRAIL_PAGE_SIZE` records, 250 by default): a window's pages are
walked one after the other (relative pagination: each page names the next), while windows
are walked side by side, so windows of a few pages keep many requests in flight and waste at
most one partial page each. The requests of a backfill are then

    ceil(days / 200) + sum over windows w of max(1, ceil(n_w / page_size))

where `n_w` is the calls of window `w` (`requests_for`).
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from callrail_sync import errors
from callrail_sync.callrail.calls import next_offset
from callrail_sync.callrail.client import MAX_PER_PAGE, CallRailClient, segment
from callrail_sync.streams import Stream

TIMESERIES_POINTS = 200
"""CallRail's timeseries answers at most 200 data points a request."""
RETENTION_MONTHS = 25
MAX_RECORDS_PER_WINDOW = 500_000
"""A window that has read this many records and not ended is refused (2,000 pages of 250)."""
CONVERSATION_BACKFILL = ("this_year", "last_year")
"""text-messages.json takes only `date_range`: the backfill lists these two ranges (together
at most 24 months, inside the retention), and each later run lists `recent`."""
CONVERSATION_RECENT = "recent"
UNSIZED_WINDOW_DAYS = 2
"""Days per window when no daily counts size them (their endpoint answered 404)."""


@dataclass(frozen=True)
class Window:
    """Days `first` to `last`, both included; or, for a `date_range` stream, a named range."""

    first: date | None = None
    last: date | None = None
    date_range: str | None = None
    expected: int | None = None
    """Records the daily counts promise in it (calls), when they were read."""

    @property
    def key(self) -> str:
        if self.date_range is not None:
            return self.date_range
        return f"{self.first}..{self.last}"

    @property
    def days(self) -> int:
        if self.first is None or self.last is None:
            return 0
        return (self.last - self.first).days + 1

    def params(self, time_zone: str) -> dict[str, str]:
        """The date parameters of a request for this window."""
        if self.date_range is not None:
            return {"date_range": self.date_range}
        if self.first is None or self.last is None:
            raise ValueError("a window needs its days")
        return {
            "start_date": self.first.isoformat(),
            "end_date": self.last.isoformat(),
            "time_zone": time_zone,
        }

    def as_doc(self) -> dict[str, Any]:
        return {
            "first": self.first.isoformat() if self.first else None,
            "last": self.last.isoformat() if self.last else None,
            "date_range": self.date_range,
            "expected": self.expected,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Window:
        first, last = doc.get("first"), doc.get("last")
        return cls(
            first=date.fromisoformat(first) if first else None,
            last=date.fromisoformat(last) if last else None,
            date_range=doc.get("date_range"),
            expected=doc.get("expected"),
        )


def months_before(day: date, months: int) -> date:
    year, month = divmod(day.year * 12 + day.month - 1 - months, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def backfill_start(today: date, backfill_days: int) -> date:
    """The oldest day a backfill reads: `backfill_days` back (today is day 1), never before
    CallRail's retention (the day 25 months ago is still kept; one more day of margin, so a
    window never touches the edge that CallRail refuses)."""
    oldest = months_before(today, RETENTION_MONTHS) + timedelta(days=1)
    return max(oldest, today - timedelta(days=max(1, backfill_days) - 1))


def rescan_window(today: date, rescan_days: int) -> Window:
    """The trailing days a periodic run reads again (CallRail edits calls afterwards and has
    no updated-since filter), today included."""
    return Window(today - timedelta(days=max(1, rescan_days) - 1), today)


def plain_windows(first: date, last: date, days: int) -> list[Window]:
    """Windows of at most `days` days from `last` back to `first`, newest first."""
    windows: list[Window] = []
    end = last
    while end >= first:
        start = max(first, end - timedelta(days=days - 1))
        windows.append(Window(start, end))
        end = start - timedelta(days=1)
    return windows


def sized_windows(
    counts: dict[date, int], first: date, last: date, per_window: int, max_days: int
) -> list[Window]:
    """Windows newest first, each holding about `per_window` records by the daily counts
    (a day is never split: a day above it is a window of its own), at most `max_days` long."""
    windows: list[Window] = []
    end = last
    day = last
    held = 0
    while day >= first:
        n = counts.get(day, 0)
        days = (end - day).days + 1
        if day != end and (held + n > per_window or days > max_days):
            windows.append(Window(day + timedelta(days=1), end, expected=held))
            end, held = day, 0
        held += n
        day -= timedelta(days=1)
    windows.append(Window(first, end, expected=held))
    return windows


def requests_for(windows: Iterable[Window], days: int = 0, page_size: int = MAX_PER_PAGE) -> int:
    """The fewest requests that read these windows in pages of `page_size`, plus the day
    counts that sized them (`days` days, 200 a request)."""
    pages = sum(max(1, math.ceil((w.expected or 0) / page_size)) for w in windows)
    return pages + (math.ceil(days / TIMESERIES_POINTS) if days else 0)


def day_counts(
    client: CallRailClient,
    callrail_account_id: str,
    stream: Stream,
    first: date,
    last: date,
    time_zone: str,
) -> dict[date, int]:
    """The stream's records per day from `first` to `last` (its timeseries endpoint, 200 days
    a request; a 25-month backfill's four requests are sent at once: asked one after the
    other, they were the one part of a backfill's walk that did not overlap)."""
    if stream.day_counts is None:
        raise ValueError(f"{stream.name} has no day counts")
    path = f"/a/{segment(callrail_account_id)}/{stream.day_counts}"
    spans = plain_windows(first, last, TIMESERIES_POINTS)

    def points(span: Window) -> list[Any]:
        params = {"interval": "day", "fields": "total_calls", **span.params(time_zone)}
        body = client.request("GET", path, params=params)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise errors.ServerError("unexpected response body for timeseries", status=200)
        return data

    if len(spans) == 1:
        answers = [points(spans[0])]
    else:
        with ThreadPoolExecutor(len(spans), thread_name_prefix="day-counts") as pool:
            answers = list(pool.map(points, spans))
    counts: dict[date, int] = {}
    for data in answers:
        for point in data:
            try:
                day = date.fromisoformat(str(point["date"])[:10])
                counts[day] = counts.get(day, 0) + int(point.get("total_calls") or 0)
            except (KeyError, TypeError, ValueError):
                raise errors.ServerError("unexpected timeseries point", status=200) from None
    return counts


@dataclass(frozen=True)
class FetchedPage:
    items: list[dict[str, Any]]
    next_cursor: str | None
    """Where the window goes on (a relative `offset`, or the next page number), or None at
    its end."""
    total: int | None = None
    """Records CallRail says the listing holds (offset pagination), when it says so."""


def fetch_page(
    client: CallRailClient,
    callrail_account_id: str,
    stream: Stream,
    window: Window | None,
    cursor: str | None,
    *,
    fields: list[str],
    time_zone: str,
) -> FetchedPage:
    """One page of a stream (inside `window`, if it has one), from `cursor` (None: the first)."""
    path = f"/a/{segment(callrail_account_id)}/{stream.path}"
    params: dict[str, Any] = {"per_page": client.page_size}
    if fields:
        params["fields"] = ",".join(fields)
    if window is not None:
        params.update(window.params(time_zone))
    if stream.paging == "relative":
        params["relative_pagination"] = "true"
        if cursor is not None:
            params["offset"] = cursor
    else:
        params["page"] = int(cursor or 1)
    body = client.request("GET", path, params=params)
    if not isinstance(body, dict) or not isinstance(body.get(stream.records_key) or [], list):
        raise errors.ServerError(f"unexpected response body for {stream.name}", status=200)
    items = [i for i in body.get(stream.records_key) or [] if isinstance(i, dict)]
    for item in items:
        ident = item.get(stream.id_field)
        if isinstance(ident, int) and not isinstance(ident, bool):
            item[stream.id_field] = str(ident)  # tags' ids are integers; legacy call ids too
        elif not isinstance(ident, str) or not ident:
            raise errors.ServerError(
                f"CallRail sent a {stream.name} record without an id", status=200
            )
    if stream.paging == "relative":
        return FetchedPage(items, next_offset(body))
    page = int(cursor or 1)
    total_pages, total = body.get("total_pages"), body.get("total_records")
    more = (
        page < total_pages
        if isinstance(total_pages, int) and total_pages > 0
        else len(items) >= client.page_size  # no usable metadata: a full page earns one more look
    )
    total_records = total if isinstance(total, int) else None
    return FetchedPage(items, str(page + 1) if more and items else None, total_records)
