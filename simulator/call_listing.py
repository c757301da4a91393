"""`GET /v3/a/{account}/calls.json`: an account's calls, newest `start_time` first.

Filters: `company_id`, and `start_date` / `end_date` (an ISO 8601 date or time; a date is a
whole UTC day; a time without an offset is UTC). Without `start_date`, the last 30 days, as
CallRail's default; a `start_date` before 25 months ago is a 400 (CallRail keeps no older
calls). Two ways to page, not to be mixed on one walk:

- offset: `page` and `per_page`, answered like every other listing (`query.paginate`);
- relative: `relative_pagination=true`, then each `next_page` URL as given. Its `offset`
  names the last call served (its start instant and id), not a count, so calls arriving at
  the head mid-walk neither repeat nor skip a call of the walk.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from simulator.calls import CallBook, Key
from simulator.data import SimAccount
from simulator.query import Query, asked_fields, paginate, param, per_page
from simulator.replies import error

DEFAULT_DAYS = 30
KEPT_MONTHS = 25


def list_calls(book: CallBook, account: SimAccount, query: Query, url: str) -> dict[str, Any]:
    """The page of calls a query asks for; `url` is the absolute URL of the listing, for
    `next_page`. Errors are raised as 400 replies."""
    company_id = param(query, "company_id") or None
    since, until = _range(query)
    extra = asked_fields(query)
    relative = (param(query, "relative_pagination") or "").lower() in ("true", "1")
    if not relative:
        if "offset" in query:
            raise error(400, "offset goes with relative_pagination=true")
        with book.data.lock:
            calls = [c.public(extra) for c in book.newest_first(account, company_id, since, until)]
        return paginate("calls", calls, query)
    if "page" in query:
        raise error(400, "page does not go with relative_pagination=true")
    size = per_page(query)
    offset = param(query, "offset")
    before = _position(offset) if offset else None
    with book.data.lock:
        found = book.newest_first(account, company_id, since, until, before, size + 1)
        page = [c.public(extra) for c in found[:size]]
        last = found[size - 1].key if len(found) > size else None
    return {
        "calls": page,
        "per_page": size,
        "has_next_page": last is not None,
        "next_page": _link(url, query, _token(last)) if last is not None else None,
    }


def _range(query: Query) -> tuple[datetime, datetime | None]:
    now = datetime.now(UTC)
    start, end = param(query, "start_date"), param(query, "end_date")
    since = _moment(start, "start_date", end=False) if start else now - timedelta(DEFAULT_DAYS)
    until = _moment(end, "end_date", end=True) if end else None
    oldest = datetime.combine(_months_before(now, KEPT_MONTHS).date(), time.min, UTC)
    if since < oldest:  # by the day: the date 25 months ago is still served
        raise error(400, f"start_date is more than {KEPT_MONTHS} months ago: no calls are kept")
    if until is not None and until < since:
        raise error(400, "end_date is before start_date")
    return since, until


def _moment(text: str, name: str, end: bool) -> datetime:
    """A date (its first or, for an end, last instant in UTC) or a time (UTC if naive)."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        return datetime.combine(day, time.max if end else time.min, UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise error(400, f"{name} must be an ISO 8601 date or time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _months_before(moment: datetime, months: int) -> datetime:
    year, month = divmod(moment.year * 12 + moment.month - 1 - months, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def _token(key: Key) -> str:
    """The `offset` that resumes a walk after the call at `key`: opaque to the client."""
    raw = json.dumps([key[0].isoformat(), key[1]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _position(token: str) -> Key:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        stamp, call_id = json.loads(raw)
        moment = datetime.fromisoformat(stamp)
    except (binascii.Error, ValueError, TypeError):
        raise error(400, "offset is not one this API gave") from None
    if moment.tzinfo is None or not isinstance(call_id, str):
        raise error(400, "offset is not one this API gave")
    return moment, call_id


def _link(url: str, query: Query, offset: str) -> str:
    """The listing's URL with the same parameters but `offset`."""
    pairs = [(name, v) for name, values in query.items() if name != "offset" for v in values]
    return f"{url}?{urlencode([*pairs, ('offset', offset)])}"
