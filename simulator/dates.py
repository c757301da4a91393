"""Date filters as CallRail's stream endpoints read them (CALLRAIL_STREAMS.md §1).

`date_range` names a range (`recent`, the default when no date parameter is sent, is the
previous 7 days including today); `start_date` / `end_date` take an ISO date or date-time, both
inclusive (a bare `end_date` is that whole day). Dates are read in the `time_zone` asked for
(an IANA name), else in the account's time zone, which no endpoint shows (the documentation
gives the default two ways: a client must state the zone). Nothing is kept beyond 25 months: a
range reaching further back (`all_time` always does) is a 400.
"""

from __future__ import annotations

import calendar
import contextlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from simulator.query import Query, param
from simulator.replies import error

KEPT_MONTHS = 25


@dataclass(frozen=True)
class Span:
    """Instants `start` to `end`, both included, and the zone the request reads and writes."""

    start: datetime
    end: datetime
    zone: tzinfo
    zone_name: str

    @property
    def first(self) -> float:
        return self.start.timestamp()

    @property
    def last(self) -> float:
        return self.end.timestamp()


def zone_named(name: str) -> tzinfo:
    """An IANA time zone, or a 400 reply."""
    try:
        return ZoneInfo(name) if name not in ("UTC", "Etc/UTC") else UTC
    except (ZoneInfoNotFoundError, ValueError):
        raise error(400, f"Invalid time zone: {name}") from None


def months_before(day: date, months: int) -> date:
    year, month = divmod(day.year * 12 + day.month - 1 - months, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def oldest_kept(now: datetime, zone: tzinfo) -> datetime:
    """The first instant still kept: the start of the day 25 months ago, in `zone`."""
    day = months_before(now.astimezone(zone).date(), KEPT_MONTHS)
    return datetime.combine(day, time.min, zone)


def span_of(
    query: Query,
    default_zone: str,
    *,
    dates: bool = True,
    now: datetime | None = None,
) -> Span:
    """The range a listing's query asks for. `dates=False`: only `date_range` is read (the
    text messages endpoint), `start_date`/`end_date` are ignored as CallRail ignores
    parameters it does not know."""
    now = now or datetime.now(UTC)
    zone_name = param(query, "time_zone") or default_zone
    zone = zone_named(zone_name)
    start_text = param(query, "start_date") if dates else None
    end_text = param(query, "end_date") if dates else None
    named = param(query, "date_range")
    oldest = oldest_kept(now, zone)
    if start_text or end_text:
        start = _moment(start_text, "start_date", zone, end=False) if start_text else oldest
        end = _moment(end_text, "end_date", zone, end=True) if end_text else now
        if end < start:
            raise error(400, "end_date is before start_date")
    else:
        start, end = _named(named or "recent", now.astimezone(zone))
    if start < oldest:
        raise error(
            400, f"The date range reaches beyond the {KEPT_MONTHS} months CallRail keeps data"
        )
    return Span(start, end, zone, zone_name)


def _named(name: str, now: datetime) -> tuple[datetime, datetime]:
    zone = now.tzinfo
    today = now.date()

    def day_start(day: date) -> datetime:
        return datetime.combine(day, time.min, zone)

    def day_end(day: date) -> datetime:
        return datetime.combine(day, time.max, zone)

    first_of_month = today.replace(day=1)
    last_month_end = first_of_month - timedelta(days=1)
    spans = {
        "recent": (day_start(today - timedelta(days=6)), now),
        "today": (day_start(today), now),
        "yesterday": (day_start(today - timedelta(days=1)), day_end(today - timedelta(days=1))),
        "last_7_days": (day_start(today - timedelta(days=7)), day_end(today - timedelta(days=1))),
        "last_30_days": (
            day_start(today - timedelta(days=30)),
            day_end(today - timedelta(days=1)),
        ),
        "this_month": (day_start(first_of_month), now),
        "last_month": (day_start(last_month_end.replace(day=1)), day_end(last_month_end)),
        "this_year": (day_start(today.replace(month=1, day=1)), now),
        "last_year": (
            day_start(date(today.year - 1, 1, 1)),
            day_end(date(today.year - 1, 12, 31)),
        ),
        "all_time": (datetime(2000, 1, 1, tzinfo=UTC), now),
    }
    if name not in spans:
        raise error(400, f"Invalid date_range: {name}")
    return spans[name]


def _moment(text: str, name: str, zone: tzinfo, end: bool) -> datetime:
    """A bare date (its first or, for an end, last instant in `zone`) or a date-time (in
    `zone` when it has no offset)."""
    with contextlib.suppress(ValueError):
        return datetime.combine(date.fromisoformat(text), time.max if end else time.min, zone)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise error(400, f"{name} must be an ISO 8601 date or time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def write(moment: datetime, zone: tzinfo) -> str:
    """A timestamp as CallRail writes a call's: ISO 8601 with the offset of `zone`."""
    return moment.astimezone(zone).isoformat(timespec="milliseconds")


def write_utc(epoch: float) -> str:
    """A timestamp as CallRail writes form and text times: UTC with a `Z`."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
