"""`calls.json`, `calls/summary.json` and `calls/timeseries.json` of an account, as
CALLRAIL_STREAMS.md describes them.

The calls are the account's made-up history (`history.py`) and the calls placed while running
(`calls.py`), less those marked spam, with their later edits; newest `start_time` first (ties:
the greater id first). The traps are CallRail's: no date parameter means `recent` (7 days);
`start_date`/`end_date` are inclusive; dates are read, and `start_time` written, in the
request's `time_zone` (else the account's, which nothing shows); optional fields only with
`fields=` (an unknown name is a 400); relative pagination (calls only) names the next page by a
0-based page index, so pages shift when calls arrive or vanish mid-walk, like offset pages.
"""

from __future__ import annotations

import hashlib
import json
import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from simulator import dates
from simulator.calls import CallBook, SimCall
from simulator.data import SimAccount
from simulator.history import (
    CONSTANT,
    PROFILE_FIELDS,
    PROFILES,
    Facts,
    History,
    fragments,
    joined,
    milestone_dates,
    mix,
)
from simulator.query import Query, asked_fields, page_number, param, per_page, sort_asked
from simulator.replies import error

DEFAULT_KEYS = (
    "answered",
    "business_phone_number",
    "customer_city",
    "customer_country",
    "customer_name",
    "customer_phone_number",
    "customer_state",
    "direction",
    "duration",
    "id",
    "recording",
    "recording_duration",
    "recording_player",
    "start_time",
    "tracking_phone_number",
    "voicemail",
)
"""A call's keys without `fields=`."""
OWN_OPTIONAL = (
    "agent_email",
    "call_type",
    "company_id",
    "company_name",
    "company_time_zone",
    "created_at",
    "first_call",
    "prior_calls",
    "total_calls",
    "lead_status",
    "tags",
    "tracker_id",
    "person_id",
    "timeline_url",
    "gclid",
    "session_uuid",
    "formatted_customer_name",
    "formatted_customer_phone_number",
    "formatted_duration",
    *CONSTANT,  # the note, value, click ids and analysis fields: see `history.CONSTANT`
)
PROFILE_SET = frozenset(PROFILE_FIELDS)
OPTIONAL = frozenset(OWN_OPTIONAL) | frozenset(PROFILE_FIELDS)
"""Every name `fields=` takes on calls.json."""
SORTS: dict[str, str | None] = {
    "start_time": None,
    "duration": None,
    "customer_name": None,
    "customer_phone_number": None,
    "customer_city": None,
    "customer_country": None,
    "answered": None,
    "source_name": "source_name",
    "lead_status": "lead_status",
    "source": "source",
    "landing_page_url": "landing_page_url",
    "device_type": "device_type",
    "first_call": "first_call",
    "tags": "tags",
}
"""calls.json's sort fields, and the optional field each needs in `fields=` (None: none)."""
COUNTS = (
    "total_calls",
    "missed_calls",
    "answered_calls",
    "first_time_callers",
    "average_duration",
    "formatted_average_duration",
    "leads",
)
GROUPS = {
    "source": "source",
    "keywords": "keywords",
    "campaign": "campaign",
    "referrer": "referrer_domain",
    "landing_page": "landing_page_url",
    "company": "company_name",
    "company_id": "company_id",
}
INTERVALS = ("hour", "day", "week", "month", "year")
MAX_POINTS = 200


# --- one call, whichever kind ------------------------------------------------------------------


class Ref:
    """A call of the listing: a place in the history, or a placed call. A made-up call's id
    is drawn only when asked for (filters and roll-ups mostly need none)."""

    __slots__ = ("_id", "history", "place", "placed", "start")

    def __init__(
        self,
        start: float,
        place: int = -1,
        placed: SimCall | None = None,
        history: History | None = None,
    ) -> None:
        self.start, self.place, self.placed, self.history = start, place, placed, history
        self._id: str | None = placed.id if placed is not None else None

    @property
    def call_id(self) -> str:
        if self._id is None:
            assert self.history is not None
            self._id = self.history.call_id(self.place)
        return self._id


class Calls:
    """The calls of one account as the listings read them."""

    def __init__(self, book: CallBook, account: SimAccount) -> None:
        self.book = book
        self.account = account
        self.history: History = book.data.history(account)

    def refs(self, span: dates.Span, keep: Test | None) -> list[Ref] | Range:
        """The calls started in the span that `keep` keeps, newest first; a `Range` (no list
        made) when nothing is filtered, placed or marked spam in it."""
        lo, hi = self.history.between(span.first, span.last)
        placed = [
            c
            for c in self.book.placed(self.account)
            if span.first <= c.epoch <= span.last and c.id not in self.book.spam
        ]
        spam = self._spam_places()
        if keep is None and not placed and not any(lo <= p < hi for p in spam):
            return Range(self.history, lo, hi)
        found = [
            Ref(self.history.starts[p], place=p, history=self.history)
            for p in range(lo, hi)
            if p not in spam
        ]
        found += [Ref(c.epoch, placed=c) for c in placed]
        if keep is not None:
            found = [r for r in found if keep(self, r)]
        found.sort(key=lambda r: (r.start, r.call_id), reverse=True)
        return found

    def _spam_places(self) -> set[int]:
        places = (self.history.place_of(i) for i in self.book.spam)
        return {p for p in places if p is not None}

    def record(self, ref: Ref) -> dict[str, Any]:
        """Every field of a call (times as epoch seconds in `_start`), edits applied."""
        if ref.placed is not None:
            body = placed_record(ref.placed, self.book.data.companies(self.account))
        else:
            body = self.history.record(ref.place)
        edits = self.book.edits.get(ref.call_id)
        if edits:
            body.update(edits)
            if "tags" in edits:
                body["tags"] = [{"name": t, "color": "gray1"} for t in edits["tags"]]
        return body

    def facts(self, ref: Ref) -> Facts:
        """What filters and roll-ups read, edits applied."""
        if ref.placed is None and (not self.book.edits or ref.call_id not in self.book.edits):
            return self.history.facts(ref.place)
        body = self.record(ref)
        return Facts(
            bool(body["answered"]),
            bool(body["voicemail"]),
            body["direction"] == "outbound",
            int(body["duration"]),
            bool(body["first_call"]),
            body["lead_status"],
            int(body["_profile"]),
            tuple(t["name"] for t in body["tags"]),
        )

    def company_of(self, ref: Ref) -> str:
        if ref.placed is not None:
            return ref.placed.company_id
        return self.history.company_id(ref.place)


Test = Callable[[Calls, Ref], bool]
"""Whether a listing keeps a call of the account's `Calls`."""


class Range:
    """The history's calls `lo` to `hi`, newest first, with no list made."""

    def __init__(self, history: History, lo: int, hi: int) -> None:
        self.history, self.lo, self.hi = history, lo, hi

    def __len__(self) -> int:
        return self.hi - self.lo

    def __getitem__(self, window: slice) -> list[Ref]:
        start, stop, _ = window.indices(len(self))
        places = range(self.hi - 1 - start, self.hi - 1 - stop, -1)
        h = self.history
        return [Ref(h.starts[p], place=p, history=h) for p in places]


def placed_record(call: SimCall, companies: list[dict[str, Any]]) -> dict[str, Any]:
    """Every field of a placed call: its own, and the rest drawn from its id's hash."""
    h = mix(int(hashlib.sha256(call.id.encode()).hexdigest()[:16], 16))
    facts = Facts.of(h)
    company = next((c for c in companies if c["id"] == call.company_id), None)
    name = company["name"] if company else ""
    zone = company["time_zone"] if company else "UTC"
    recorded = call.answered or call.voicemail
    return {
        "id": call.id,
        "_start": call.epoch,
        "_created": datetime.fromisoformat(call.created_at).timestamp(),
        "_profile": facts.profile,
        "answered": call.answered,
        "business_phone_number": call.business_phone_number,
        "customer_city": call.customer_city,
        "customer_country": "US",
        "customer_name": call.customer_name,
        "customer_phone_number": call.customer_phone_number,
        "customer_state": None,
        "direction": call.direction,
        "duration": call.duration,
        "recording": call.recording,
        "recording_duration": str(max(0, call.duration - 3)) if recorded else None,
        "recording_player": None,
        "tracking_phone_number": call.tracking_phone_number,
        "voicemail": call.voicemail,
        "agent_email": None,
        "call_type": "answered" if call.answered else "voicemail" if call.voicemail else "missed",
        "company_id": call.company_id,
        "company_name": name,
        "company_time_zone": zone,
        "first_call": facts.first_call,
        "prior_calls": 0,
        "total_calls": 1,
        "lead_status": None,
        **CONSTANT,  # as a made-up call has them (unknown for a placed call), but its note
        "note": call.note,
        "tags": [{"name": t, "color": "gray1"} for t in call.tags],
        "tracker_id": call.tracker_id,
        "person_id": f"PER{h:032x}"[:35],
        "timeline_url": f"https://app.callrail.com/calls/{call.id}/timeline",
        "gclid": "",
        "session_uuid": f"{mix(h):032x}"[:32],
        "formatted_customer_name": call.customer_name,
        "formatted_customer_phone_number": call.customer_phone_number,
        "formatted_duration": f"{call.duration // 60}m {call.duration % 60}s",
    }


# --- calls.json ----------------------------------------------------------------------------------


def list_calls(book: CallBook, account: SimAccount, query: Query, url: str) -> str:
    """The page of calls a query asks for, as JSON text; `url` is the absolute URL of the
    listing, for `next_page`. Errors are raised as 400 replies."""
    span = dates.span_of(query, account.time_zone)
    fields = _fields(query)
    shape = Shape.of(fields)
    keep = _filters(query)
    with book.data.lock:
        calls = Calls(book, account)
        refs = calls.refs(span, keep)
        refs = _sorted(calls, refs, query, fields)
        size = per_page(query)
        relative = (param(query, "relative_pagination") or "").lower() in ("true", "1")
        if relative:
            index = _page_index(query)
            page = refs[index * size : (index + 1) * size]
            more = (index + 1) * size < len(refs)
            records = [_render(calls, r, shape, span) for r in page]
            return _object(
                {
                    "per_page": size,
                    "has_next_page": more,
                    "next_page": _next_page(url, query, index + 1) if more else None,
                },
                "calls",
                records,
            )
        if "offset" in query:
            raise error(400, "offset goes with relative_pagination=true")
        number = page_number(query)
        page = refs[(number - 1) * size : number * size]
        records = [_render(calls, r, shape, span) for r in page]
        meta = {
            "page": number,
            "per_page": size,
            "total_pages": math.ceil(len(refs) / size),
            "total_records": len(refs),
        }
        return _object(meta, "calls", records)


def _object(meta: dict[str, Any], key: str, records: list[str]) -> str:
    """A listing's JSON: its metadata and records already written as JSON."""
    head = json.dumps(meta)[:-1]
    return f'{head}, "{key}": [{",".join(records)}]}}'


def _fields(query: Query) -> tuple[str, ...]:
    asked = asked_fields(query, OPTIONAL | set(DEFAULT_KEYS))
    return tuple(sorted(asked - set(DEFAULT_KEYS)))


@dataclass(frozen=True)
class Shape:
    """What a listing shows of each call: the fields asked for, split once per request."""

    own: tuple[str, ...]
    profiled: tuple[str, ...]
    created: bool
    milestones: bool
    variable: tuple[str, ...]
    """`own` less the fields every made-up call has the same value of..."""
    wanted: frozenset[str]
    constant: str
    every_variable: bool
    """... which are these, as JSON (without braces)."""

    @classmethod
    def of(cls, fields: tuple[str, ...]) -> Shape:
        own = tuple(n for n in fields if n not in PROFILE_SET and n != "created_at")
        profiled = tuple(n for n in fields if n in PROFILE_SET)
        fixed = {n: CONSTANT[n] for n in own if n in CONSTANT}
        variable = tuple(n for n in own if n not in CONSTANT)
        constant = json.dumps(fixed, separators=(",", ":"))[1:-1]
        created, milestones = "created_at" in fields, "milestones" in profiled
        wanted = frozenset(variable)
        every = wanted >= VARIABLE_OPTIONAL
        return cls(own, profiled, created, milestones, variable, wanted, constant, every)


PLAIN_KEYS = tuple(k for k in DEFAULT_KEYS if k != "start_time")


def _render(calls: Calls, ref: Ref, shape: Shape, span: dates.Span) -> str:
    """One call as JSON: its default keys and the optional fields asked for. A made-up call
    never edited takes its constant fields from JSON made once per field set."""
    fast = ref.placed is None and (not calls.book.edits or ref.call_id not in calls.book.edits)
    created: float | None = None
    if fast:
        own = calls.history.variable(ref.place, shape.wanted)
        start, profile = own.pop("_start"), own.pop("_profile")
        if shape.wanted and not shape.every_variable:
            own = {k: own[k] for k in (*PLAIN_KEYS, *shape.variable)}
    else:
        body = calls.record(ref)
        start, profile = body["_start"], body["_profile"]
        own = {k: body[k] for k in (*PLAIN_KEYS, *shape.own)}
        created = body.get("_created")
    began = datetime.fromtimestamp(start, UTC)
    at = began.isoformat(timespec="milliseconds")
    own["start_time"] = at if span.zone is UTC else dates.write(began, span.zone)
    if shape.created:
        moment = start + 2 if created is None else created
        own["created_at"] = dates.write(datetime.fromtimestamp(moment, UTC), span.zone)
    text = COMPACT(own)[:-1]
    if fast and shape.constant:
        text = f"{text},{shape.constant}"
    if not shape.profiled:
        return text + "}"
    pieces = fragments(shape.profiled)[profile]
    moments = milestone_dates(began, at) if shape.milestones else []
    return f"{text},{joined(pieces, moments)}}}"


COMPACT = json.JSONEncoder(separators=(",", ":")).encode
VARIABLE_OPTIONAL = frozenset(OWN_OPTIONAL) - frozenset(CONSTANT) - {"created_at"}
"""The optional fields `History.variable` draws for a made-up call."""


def _page_index(query: Query) -> int:
    if param(query, "page") not in (None, "1"):
        raise error(400, "page does not go with relative_pagination=true: follow next_page")
    try:
        index = int(param(query, "offset") or 0)
    except ValueError:
        raise error(400, "offset must be the page index next_page gave") from None
    if index < 0:
        raise error(400, "offset must be the page index next_page gave")
    return index


def _next_page(url: str, query: Query, index: int) -> str:
    """The next relative page as CallRail writes it: the path without `.json`, its sort
    spelled out, the same parameters, `offset` the 0-based page index, `page=1`."""
    pairs = [
        (name, v)
        for name, values in query.items()
        if name not in ("offset", "page", "per_page", "relative_pagination")
        for v in values
    ]
    size = per_page(query)
    tail = [("offset", str(index)), ("page", "1"), ("per_page", str(size))]
    tail.append(("relative_pagination", "true"))
    head = [("action", "index"), ("api_sort[][start_time]", "desc")]
    return f"{url.removesuffix('.json')}?{urlencode([*head, *pairs, *tail])}"


def _sorted(
    calls: Calls, refs: list[Ref] | Range, query: Query, fields: tuple[str, ...]
) -> list[Ref] | Range:
    asked = sort_asked(query, SORTS)
    if asked is None or (asked[0] == "start_time" and param(query, "order") != "asc"):
        return refs  # newest first unless asked otherwise
    sort, descending = asked
    needs = SORTS[sort]
    if needs is not None and needs not in fields:
        raise error(400, f"Sorting by {sort} needs fields={needs}")
    chosen = list(refs[0 : len(refs)]) if isinstance(refs, Range) else list(refs)
    if sort == "start_time":
        return chosen[::-1]

    def key(ref: Ref) -> Any:
        value = calls.record(ref).get(sort)
        if sort == "source":
            value = PROFILES[calls.record(ref)["_profile"]]["source"]
        if isinstance(value, list):
            value = ",".join(str(v.get("name", v)) if isinstance(v, dict) else v for v in value)
        return (value is None, str(value).lower() if isinstance(value, str) else value or 0)

    # Alphabetical (or smallest first) by default, as CallRail sorts; ties newest first.
    return sorted(chosen, key=key, reverse=descending)


# --- filters -------------------------------------------------------------------------------------


def _filters(query: Query) -> Test | None:
    """The filters a query names, as one test of a call; None: none named."""
    tests: list[Test] = []
    company = param(query, "company_id")
    if company:
        tests.append(lambda c, r: c.company_of(r) == company)
    tracker = param(query, "tracker_id")
    if tracker:
        tests.append(lambda c, r: c.record(r)["tracker_id"] == tracker)
    answer = param(query, "answer_status")
    if answer not in (None, "all"):
        answers: dict[str, Callable[[Facts], bool]] = {
            "answered": lambda f: f.answered,
            "missed": lambda f: not f.answered and not f.voicemail and not f.outbound,
            "voicemail": lambda f: f.voicemail,
        }
        wanted = answers.get(answer or "")
        if wanted is None:
            raise error(400, f"Invalid answer_status: {answer}")
        tests.append(lambda c, r: wanted(c.facts(r)))
    direction = param(query, "direction")
    if direction:
        if direction not in ("inbound", "outbound"):
            raise error(400, f"Invalid direction: {direction}")
        tests.append(lambda c, r: c.facts(r).outbound == (direction == "outbound"))
    lead = param(query, "lead_status")
    if lead:
        if lead not in ("good_lead", "not_a_lead", "not_scored"):
            raise error(400, f"Invalid lead_status: {lead}")
        wanted_lead = None if lead == "not_scored" else lead
        tests.append(lambda c, r: c.facts(r).lead_status == wanted_lead)
    kind = param(query, "call_type")
    if kind:
        kinds: dict[str, Callable[[Facts], bool]] = {
            "first_call": lambda f: f.first_call and not f.outbound,
            "missed": lambda f: not f.answered and not f.voicemail and not f.outbound,
            "voicemails": lambda f: f.voicemail,
            "inbound": lambda f: not f.outbound,
            "outbound": lambda f: f.outbound,
        }
        if kind not in kinds:
            raise error(400, f"Invalid call_type: {kind}")
        tests.append(lambda c, r: kinds[kind](c.facts(r)))
    device = param(query, "device")
    if device not in (None, "all"):
        tests.append(lambda c, r: PROFILES[c.facts(r).profile]["device_type"] == device)
    tags = set(query.get("tags", []) + query.get("tags[]", []))
    if tags:
        tests.append(lambda c, r: bool(tags & set(c.facts(r).tags)))
    search = (param(query, "search") or "").lower()
    if search:
        tests.append(lambda c, r: _matches(c.record(r), search))
    low, high = _seconds(query, "min_duration"), _seconds(query, "max_duration")
    if low is not None:
        tests.append(lambda c, r: c.facts(r).duration >= low)
    if high is not None:
        tests.append(lambda c, r: c.facts(r).duration <= high)
    if not tests:
        return None
    return lambda calls, ref: all(test(calls, ref) for test in tests)


def _seconds(query: Query, name: str) -> int | None:
    text = param(query, name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise error(400, f"{name} must be a number of seconds") from None


def _matches(body: dict[str, Any], term: str) -> bool:
    """CallRail's call search: phone numbers, the customer's name, the note, the source."""
    texts: Iterable[Any] = (
        body["business_phone_number"],
        body["customer_name"],
        body["customer_phone_number"],
        body["note"],
        PROFILES[body["_profile"]]["source"],
        body["tracking_phone_number"],
    )
    return any(term in str(t).lower() for t in texts if t)


# --- summary and timeseries ---------------------------------------------------------------------


def _counts_asked(query: Query) -> list[str]:
    return sorted(asked_fields(query, COUNTS)) or ["total_calls"]


def _tally(facts: Iterable[Facts], asked: list[str]) -> dict[str, Any]:
    total = answered = missed = first = leads = seconds = 0
    for f in facts:
        total += 1
        answered += f.answered
        missed += not f.answered and not f.outbound
        first += f.first_call
        leads += f.lead_status == "good_lead"
        seconds += f.duration
    average = round(seconds / total) if total else 0
    every = {
        "total_calls": total,
        "missed_calls": missed,
        "answered_calls": answered,
        "first_time_callers": first,
        "average_duration": average,
        "formatted_average_duration": f"{average // 60}m {average % 60}s",
        "leads": leads,
    }
    return {name: every[name] for name in asked}


def _period(span: dates.Span) -> dict[str, Any]:
    """A summary's dates as CallRail writes them (`2016-10-10T00:00:00-0400`), and its zone."""
    start, end = (
        t.astimezone(span.zone).strftime("%Y-%m-%dT%H:%M:%S%z") for t in (span.start, span.end)
    )
    return {"start_date": start, "end_date": end, "time_zone": span.zone_name}


def summary(book: CallBook, account: SimAccount, query: Query) -> dict[str, Any]:
    """`calls/summary.json`: totals, grouped by `group_by` if given. Not paginated."""
    span = dates.span_of(query, account.time_zone)
    asked = _counts_asked(query)
    group_by = param(query, "group_by")
    if group_by is not None and group_by not in GROUPS:
        raise error(400, f"Invalid group_by: {group_by}")
    if group_by in ("company", "company_id") and param(query, "company_id"):
        raise error(400, "Grouping by company works only for the whole account")
    keep = _filters(query)
    with book.data.lock:
        calls = Calls(book, account)
        refs = calls.refs(span, keep)
        chosen = refs[0 : len(refs)] if isinstance(refs, Range) else refs
        body = {**_period(span), "total_results": _tally((calls.facts(r) for r in chosen), asked)}
        if group_by is not None:
            field_name = GROUPS[group_by]
            groups: dict[str, list[Facts]] = {}
            for ref in chosen:
                facts = calls.facts(ref)
                if field_name in PROFILE_FIELDS:
                    key = PROFILES[facts.profile][field_name]
                else:
                    key = calls.record(ref)[field_name]
                groups.setdefault(str(key or ""), []).append(facts)
            body["grouped_by"] = group_by
            body["grouped_results"] = [
                {"key": key, **_tally(found, asked)} for key, found in sorted(groups.items())
            ]
    return body


def timeseries(book: CallBook, account: SimAccount, query: Query) -> dict[str, Any]:
    """`calls/timeseries.json`: counts per interval, zero where no call; at most 200 points."""
    span = dates.span_of(query, account.time_zone)
    asked = _counts_asked(query)
    interval = param(query, "interval") or "day"
    if interval not in INTERVALS:
        raise error(400, f"Invalid interval: {interval}")
    bounds = _buckets(span, interval)
    if len(bounds) > MAX_POINTS:
        raise error(
            400, f"The range holds {len(bounds)} {interval}s: at most {MAX_POINTS} data points"
        )
    keep = _filters(query)
    with book.data.lock:
        calls = Calls(book, account)
        refs = calls.refs(span, keep)
        by_bucket: list[list[Facts]] = [[] for _ in bounds]
        starts = [b[0].timestamp() for b in bounds]
        fast = asked == ["total_calls"]
        counts = [0] * len(bounds)
        if fast and isinstance(refs, Range):  # counts by bisection: no call is looked at
            edges = [*starts, span.last + 1]
            for n in range(len(bounds)):
                lo = max(refs.lo, bisect_left(calls.history.starts, edges[n]))
                hi = min(refs.hi, bisect_left(calls.history.starts, edges[n + 1]))
                counts[n] = max(0, hi - lo)
        else:
            chosen = refs[0 : len(refs)] if isinstance(refs, Range) else refs
            for ref in chosen:
                at = bisect_right(starts, ref.start) - 1
                if at < 0:
                    continue
                if fast:
                    counts[at] += 1
                else:
                    by_bucket[at].append(calls.facts(ref))
        data = []
        for n, (begin, _) in enumerate(bounds):
            label = begin.isoformat() if interval == "hour" else begin.date().isoformat()
            tally = {"total_calls": counts[n]} if fast else _tally(by_bucket[n], asked)
            data.append({"date": label, **tally})
        total = (
            {"total_calls": len(refs)}
            if fast
            else _tally((f for bucket in by_bucket for f in bucket), asked)
        )
    return {**_period(span), "total_results": total, "data": data}


def _buckets(span: dates.Span, interval: str) -> list[tuple[datetime, datetime]]:
    """The intervals covering the span, in its zone, each (start, next start)."""
    start = span.start.astimezone(span.zone)
    end = span.end.astimezone(span.zone)
    zone = span.zone
    if interval == "hour":
        first = start.replace(minute=0, second=0, microsecond=0)
    elif interval == "day":
        first = start.replace(hour=0, minute=0, second=0, microsecond=0)
    elif interval == "week":  # weeks start on Sunday, as CallRail's reports do
        day = start.date() - timedelta(days=(start.weekday() + 1) % 7)
        first = datetime(day.year, day.month, day.day, tzinfo=zone)
    elif interval == "month":
        first = datetime(start.year, start.month, 1, tzinfo=zone)
    else:
        first = datetime(start.year, 1, 1, tzinfo=zone)
    bounds: list[tuple[datetime, datetime]] = []
    at = first
    while at <= end and len(bounds) <= MAX_POINTS:
        nxt = _step(at, interval)
        bounds.append((at, nxt))
        at = nxt
    return bounds


def _step(at: datetime, interval: str) -> datetime:
    zone = at.tzinfo
    if interval == "hour":
        return (at.astimezone(UTC) + timedelta(hours=1)).astimezone(zone)
    if interval == "day":
        day = at.date() + timedelta(days=1)
    elif interval == "week":
        day = at.date() + timedelta(days=7)
    elif interval == "month":
        day = (at.replace(day=28) + timedelta(days=4)).replace(day=1).date()
    else:
        day = at.date().replace(year=at.year + 1, month=1, day=1)
    return datetime(day.year, day.month, day.day, tzinfo=zone)
