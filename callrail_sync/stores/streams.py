"""The streams kept record by record (calls, form submissions, conversations, trackers, tags,
users): each record once per feed, its change history, the calls' roll-ups, and each stream's
sync state.

A *feed* is (owner, stream, CallRail account), named `<owner>:<stream>:<account>` as the
snapshot feeds are. Shapes chosen for SecantusDB, whose planner uses one single-field index
per query, pushes no limit down, and updates at a cost that grows with the document:

- `callrail_stream_records`: one document per record, `_id` `<feed>|<id>`. Two string keys,
  each with its own index, order it: `kt` = `<feed>|<time in UTC>|<id>` (the stream's time
  field: pages and `since`/`until` are ranges of it) and `ks` = `<feed>|<seq, 12 digits>` (its
  last change: the change feed is a range of it). Reads ask bands of these ranges, so no read
  has to drop a long tail. The fields the records API filters on are kept beside the record
  (`company_id`, and for calls `answer_status`, `direction`, `source`, `first_call`,
  `lead_status`, `tags`).
- `callrail_feeds` (shared with the snapshot feeds): the feed's last number (`seq`), up to
  where numbers are written (`committed`; readers never pass it), and its records by last
  action (`actions`: moved in the same update as `committed`, so `GET /status` reads one
  document, not every record of the feed; counted again from the records after a write
  that stopped half way).
- `callrail_stream_rollups`: per feed, company and day (`<feed>|d|<company>|all|<YYYY-MM-DD>`),
  the calls' counts in total and by source, campaign and keywords in one document; for the
  whole account (`*`), per day and per month (`|m|…|<YYYY-MM>`), one document per dimension
  (`<feed>|d|*|<dimension>|<day>`, and `company` besides); the day is the call's own, in its
  company's time zone. Each write of a call adds
  what the new version counts and takes away what the old one counted, so the summary reads a
  few hundred small documents and never a call.
- `callrail_stream_state`: per feed, the backfill's windows (each with the place its walk
  reached), what the last runs did.

A record is written only when it changed (a hash of it, as CallRail sent it, merged with what
our receiver's deliveries said); each change takes the feed's next number. One writer per feed
at a time (callers hold the feed's lock), so `committed` moves past numbers that are written.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel
from pymongo import ASCENDING, InsertOne, ReturnDocument, UpdateOne

from callrail_sync.stores.changes import (
    ACTIONS,
    FEEDS,
    Action,
    ChangePage,
    change_of,
    count_actions,
    history,
)
from callrail_sync.stores.database import Db, by_ids, utcnow
from callrail_sync.stores.snapshots import as_utc, head_id, payload_hash
from callrail_sync.streams import Stream

RECORDS = "callrail_stream_records"
ROLLUPS = "callrail_stream_rollups"
STATE = "callrail_stream_state"
SEQ_DIGITS = 12
TOP = "\uffff"
"""Sorts after every character a key holds: the end of a key range."""
DIMENSIONS = ("source", "campaign", "keywords")
"""What the roll-ups count calls by, beside the company and the day."""
COUNTERS = ("calls", "answered", "missed", "first_time_callers", "duration", "leads")
"""Each roll-up cell: `duration` is the sum of seconds (the average is computed on reading)."""
NONE_KEY = "(none)"
ALL = "*"
"""The roll-up documents of the whole account (a company's id never is `*`)."""
FLOOR = datetime(2000, 1, 1, tzinfo=UTC)
"""Before any record CallRail keeps (25 months): where an open range starts."""
FUTURE = timedelta(days=2)


def feed_id(owner: str, stream: str, account: str) -> str:
    return head_id(owner, stream, account)


def seq_key(feed: str, seq: int) -> str:
    return f"{feed}|{seq:0{SEQ_DIGITS}d}"


def sort_text(value: Any) -> str:
    """A record's value as a sort key part that orders as the value does: numbers by size
    (a 100 s call after a 20 s one, not before it as text), the rest ignoring case."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{float(value) + 1e15:032.6f}"  # fixed width, non-negative: text order is size
    return str(value).lower()


def time_text(moment: datetime | None) -> str:
    """A UTC instant as a key part that sorts in time (empty for none: first)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") if moment else ""


def time_key(feed: str, moment: datetime | None, record_id: str) -> str:
    return f"{feed}|{time_text(moment)}|{record_id}"


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def local_day(record: dict[str, Any], moment: datetime | None) -> date | None:
    """The call's day in its company's time zone (`company_time_zone`), else in the offset
    its `start_time` was written with."""
    if moment is None:
        return None
    zone = _zone(str(record.get("company_time_zone") or ""))
    if zone is not None:
        return moment.astimezone(zone).date()
    text = record.get("start_time")
    written = datetime.fromisoformat(text) if isinstance(text, str) else None
    if written is not None and written.tzinfo is not None:
        return written.date()
    return moment.astimezone(UTC).date()


def answer_status(record: dict[str, Any]) -> str:
    """CallRail's `answer_status` of a call: answered, voicemail or missed."""
    if record.get("answered"):
        return "answered"
    return "voicemail" if record.get("voicemail") else "missed"


def tag_names(record: dict[str, Any]) -> list[str]:
    names = []
    for tag in record.get("tags") or []:
        name = tag.get("name") if isinstance(tag, dict) else tag
        if isinstance(name, str) and name:
            names.append(name)
    return names


def facets(stream: Stream, record: dict[str, Any]) -> dict[str, Any]:
    """The fields kept beside a record that the records API filters on."""
    found: dict[str, Any] = {"company_id": _text(record.get("company_id"))}
    if stream.name == "calls":
        found.update(
            answer_status=answer_status(record),
            direction=_text(record.get("direction")),
            source=_text(record.get("source")),
            first_call=bool(record.get("first_call")),
            lead_status=_text(record.get("lead_status")),
            tags=tag_names(record),
        )
    return found


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _cell_key(value: Any) -> str:
    """A roll-up key for a value: MongoDB keys hold no `.` and start with no `$`."""
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    text = str(value).strip() if value not in (None, "") else NONE_KEY
    return (text or NONE_KEY).replace("%", "%25").replace(".", "%2E").replace("$", "%24")


def cell_name(key: str) -> str:
    return key.replace("%24", "$").replace("%2E", ".").replace("%25", "%")


@dataclass
class Contribution:
    """What one call adds to the roll-ups: where (company, day) and how much."""

    company: str
    day: date
    counts: dict[str, int]
    cells: dict[str, str]
    """Its key under each dimension."""


def contribution(record: dict[str, Any], moment: datetime | None) -> Contribution | None:
    day = local_day(record, moment)
    if day is None:
        return None
    answered = bool(record.get("answered"))
    duration = record.get("duration")
    counts = {
        "calls": 1,
        "answered": int(answered),
        "missed": int(not answered),
        "first_time_callers": int(bool(record.get("first_call"))),
        "duration": int(duration) if isinstance(duration, int | float) else 0,
        "leads": int(record.get("lead_status") == "good_lead"),
    }
    cells = {d: _cell_key(record.get(d)) for d in DIMENSIONS}
    return Contribution(_cell_key(record.get("company_id")), day, counts, cells)


class RollupDeltas:
    """Roll-up changes gathered over a page, written as one `$inc` per document."""

    def __init__(self, feed: str) -> None:
        self.feed = feed
        self.docs: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def add(self, c: Contribution | None, sign: int, months: bool = True) -> None:
        """A call's counts, added (+1) or taken away (-1): in its company's day and in the
        account's (`*`, which also counts by company) day and month. The account's are one
        document per dimension (`all`, `source`, `campaign`, `keywords`, `company`), so an
        account's summary reads only the dimension it groups by. A company's day is one
        document (`all`, holding its dimensions too), and a company has no month documents:
        a company has a few calls a day, so one document instead of four is a quarter of
        the writes, and a write of 16 pages from windows side by side touched each
        company's months, each an update that costs three inserts (most of a backfill's
        storage); a company's summary reads its days (at most ~760 small documents)."""
        if c is None:
            return
        day, month = c.day.isoformat(), c.day.isoformat()[:7]
        whole = (("all", None), *c.cells.items(), ("company", c.company))
        own = [(f"{c.company}|all", dim, cell) for dim, cell in whole[:-1]]
        shared = [(f"{ALL}|{dim}", dim, cell) for dim, cell in whole]
        for who, dim, cell in own + shared:
            ids = [f"{self.feed}|d|{who}|{day}"]
            if months and who.startswith(f"{ALL}|"):
                ids.append(f"{self.feed}|m|{who}|{month}")
            path = "all" if cell is None else f"{dim}.{cell}"
            for doc_id in ids:
                doc = self.docs[doc_id]
                for name, n in c.counts.items():
                    if n:
                        doc[f"{path}.{name}"] += sign * n

    def changed(self) -> dict[str, dict[str, int]]:
        """Each document's non-zero changes (a document whose changes cancel out is left)."""
        found = {}
        for doc_id, incs in self.docs.items():
            nonzero = {k: v for k, v in incs.items() if v}
            if nonzero:
                found[doc_id] = nonzero
        return found

    def operations(self, there: set[str]) -> list[InsertOne[dict[str, Any]] | UpdateOne]:
        """An `$inc` for each document that is `there`, an insert of each that is not: on
        SecantusDB an insert costs a third of an upsert, and in a backfill most of a write's
        documents (its companies' days) are new."""
        ops: list[InsertOne[dict[str, Any]] | UpdateOne] = []
        for doc_id, nonzero in self.changed().items():
            if doc_id in there:
                change = {"$inc": nonzero, "$setOnInsert": {"k": doc_id}}
                ops.append(UpdateOne({"_id": doc_id}, change, upsert=True))
            else:
                ops.append(InsertOne({"_id": doc_id, "k": doc_id, **_nested(nonzero)}))
        return ops


class Written(BaseModel):
    """What a page write did."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass(frozen=True)
class RecordQuery:
    """A page of a stream's records as `/records/{stream}` asks for it."""

    feed: str
    stream: Stream
    since: datetime | None = None
    until: datetime | None = None
    company_id: str | None = None
    filters: tuple[tuple[str, Any], ...] = ()
    search: str | None = None
    sort: str | None = None
    descending: bool = True
    after: tuple[Any, ...] | None = None
    """The sort key of the last record of the previous page (keyset paging)."""
    limit: int = 100


@dataclass
class RecordPage:
    records: list[dict[str, Any]]
    has_more: bool
    last: tuple[Any, ...] | None = None


@dataclass
class StreamState:
    """A feed's sync state (see `callrail_stream_state`)."""

    feed: str
    windows: list[dict[str, Any]] = field(default_factory=list)
    """The backfill's windows, newest first: `first`, `last`, `date_range`, `expected`,
    `done`, `cursor` (where its walk goes on), `pages`, `records`."""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    requests: int = 0
    last_run: dict[str, Any] | None = None
    planned_from: str | None = None
    """The oldest day the backfill was planned from (the BACKFILL_DAYS it was made with)."""


class StreamRecordStore(Protocol):
    def write_page(
        self,
        stream: Stream,
        feed: str,
        owner: str,
        account: str,
        items: list[dict[str, Any]],
        source: str = "history",
    ) -> Written:
        """Merge a page of records into the feed (one writer per feed)."""

    def ids_between(
        self, feed: str, since: datetime | None, until: datetime | None
    ) -> dict[str, datetime | None]:
        """Live records whose time is in [since, until] (None: open), with their time."""

    def mark_deleted(self, stream: Stream, feed: str, ids: list[str]) -> int:
        """Records gone from CallRail: marked deleted (kept), their roll-ups taken away."""

    def read(self, query: RecordQuery) -> RecordPage: ...

    def changes(
        self,
        feed: str,
        after: int,
        actions: frozenset[Action],
        limit: int,
        modified_after: datetime | None = None,
    ) -> ChangePage:
        """One page of the feed's changes after number `after`."""

    def counts(self, feed: str) -> dict[str, int]: ...

    def committed(self, feed: str) -> int: ...

    def rollups(
        self,
        feed: str,
        first: date,
        last: date,
        by_day: bool = False,
        company: str | None = None,
        dim: str = "all",
    ) -> list[dict[str, Any]]:
        """One dimension's roll-up documents of one company (or of the whole account)
        covering days `first` to `last` (months where whole, unless `by_day`)."""

    def state(self, feed: str) -> StreamState: ...

    def save_state(self, state: StreamState) -> None: ...

    def unfinished_backfills(self) -> list[StreamState]:
        """The feeds whose backfill started and has not finished (for the metrics)."""
        ...

    def update_window(
        self, feed: str, index: int, cursor: str | None, done: bool, records: int
    ) -> None:
        """A window's walk stored one more page: where it goes on, whether it is done."""


class MongoStreamStore:
    """`StreamRecordStore` over MongoDB (SecantusDB here)."""

    def __init__(self, db: Db) -> None:
        self._db = db
        self._records = db[RECORDS]
        self._rollups = db[ROLLUPS]
        self._state = db[STATE]
        self._feeds = db[FEEDS]
        self._rates: dict[tuple[Any, ...], float] = {}
        """Records a second, as the last read of a feed (and its filters) found them."""

    def ensure_indexes(self) -> None:
        self._records.create_index([("kt", ASCENDING)], unique=True)
        self._records.create_index([("ks", ASCENDING)], unique=True)
        # The change feed of updates or deletions only (`/changes?actions=deleted`): one
        # action's changes in a range of numbers, without reading the additions around them.
        # Partial (`updated` and `deleted` sort after `added`): a backfill's inserts, all
        # additions, do not write it.
        self._records.create_index(
            [("last_action", ASCENDING), ("ks", ASCENDING)],
            name="rare_actions",
            partialFilterExpression={"last_action": {"$gt": "added"}},
        )
        self._rollups.create_index([("k", ASCENDING)])
        self._state.create_index([("finished_at", ASCENDING)])

    # --- writing -------------------------------------------------------------------------

    def write_page(
        self,
        stream: Stream,
        feed: str,
        owner: str,
        account: str,
        items: list[dict[str, Any]],
        source: str = "history",
    ) -> Written:
        if not items:
            return Written()
        by_id: dict[str, dict[str, Any]] = {}
        for item in items:  # a page may hold a record twice (it moved): the last one wins
            by_id[str(item[stream.id_field])] = item
        keys = [f"{feed}|{i}" for i in by_id]
        known = {d["id"]: d for d in by_ids(self._records, keys)}
        now = utcnow()
        plans: list[tuple[str, dict[str, Any], datetime | None, dict[str, Any] | None, str]]
        plans = []
        unchanged = 0
        for record_id, item in by_id.items():
            old = known.get(record_id)
            merged = {**old["record"], **item} if old is not None else dict(item)
            digest = payload_hash(merged)
            if old is not None and old.get("hash") == digest and old.get("deleted_at") is None:
                unchanged += 1
                continue
            moment = as_utc(merged.get(stream.time_field)) if stream.time_field else None
            plans.append((record_id, merged, moment, old, digest))
        written = Written(unchanged=unchanged)
        if not plans:
            return written
        last = self._take_numbers(feed, len(plans), stream)
        numbers = iter(range(last - len(plans) + 1, last + 1))
        rollups = RollupDeltas(feed)
        moves: dict[str, int] = defaultdict(int)
        ops: list[InsertOne[dict[str, Any]] | UpdateOne] = []
        for record_id, merged, moment, old, digest in plans:
            seq = next(numbers)
            doc = {
                "feed": feed,
                "owner": owner,
                "stream": stream.name,
                "callrail_account_id": account,
                "id": record_id,
                "record": merged,
                "hash": digest,
                "t": moment,
                "kt": time_key(feed, moment, record_id),
                "ks": seq_key(feed, seq),
                "seq": seq,
                "last_modified_at": now,
                "changed_at": now,
                "deleted_at": None,
                f"sources.{source}": now,
                **facets(stream, merged),
            }
            if stream.name == "calls":
                if old is not None and old.get("deleted_at") is None:
                    rollups.add(contribution(old["record"], old.get("t")), -1)
                rollups.add(contribution(merged, moment), +1)
            if old is None:
                del doc[f"sources.{source}"]
                doc |= {"sources": {source: now}, "first_seen_at": now, "last_action": "added"}
                ops.append(InsertOne({"_id": f"{feed}|{record_id}", **doc}))
                written.added += 1
            else:
                back = old.get("deleted_at") is not None
                doc["last_action"] = "added" if back else "updated"
                ops.append(UpdateOne({"_id": f"{feed}|{record_id}"}, {"$set": doc}))
                written.updated += 1
                moves[str(old.get("last_action"))] -= 1
            moves[doc["last_action"]] += 1
        self._records.bulk_write(ops, ordered=False)
        self._write_rollups(rollups)
        self._commit(feed, last, moves)
        return written

    def _commit(self, feed: str, last: int, moves: dict[str, int]) -> None:
        """Readers may read up to `last`; the feed's counts by action move as the write did."""
        change: dict[str, Any] = {"$max": {"committed": last}}
        incs = {f"actions.{a}": n for a, n in moves.items() if n and a in ACTIONS}
        if incs:
            change["$inc"] = incs
        self._feeds.update_one({"_id": feed}, change)

    def _write_rollups(self, rollups: RollupDeltas) -> None:
        """A write's roll-up changes: which documents exist read first (by id, in small
        reads), then one unordered bulk write. One writer per feed (its lock): no document
        appears between the read and the write. If the write fails half way, the feed's
        next write counts the days again (`_take_numbers`)."""
        ids = sorted(rollups.changed())
        if not ids:
            return
        there = {str(d["_id"]) for d in by_ids(self._rollups, ids, {"_id": 1})}
        self._rollups.bulk_write(rollups.operations(there), ordered=False)

    def _take_numbers(self, feed: str, n: int, stream: Stream | None = None) -> int:
        """The last of `n` new change numbers. Numbers taken before and never committed mean
        a write stopped half way (its records may be written, its roll-ups not, or in part):
        the days of those records are counted again from the records first."""
        before = self._feeds.find_one_and_update(
            {"_id": feed}, {"$inc": {"seq": n}}, upsert=True, return_document=ReturnDocument.BEFORE
        )
        seq, committed = int((before or {}).get("seq", 0)), int((before or {}).get("committed", 0))
        if seq > committed and stream is not None and stream.name == "calls":
            self.recount(feed, committed, seq)
        if seq > committed or (seq and "actions" not in (before or {})):
            # A write stopped before its counts moved (or the feed predates them).
            self._feeds.update_one({"_id": feed}, {"$set": {"actions": self._count_actions(feed)}})
        return seq + n

    def _count_actions(self, feed: str) -> dict[str, int]:
        """The feed's records by last action, counted from the records (all of them read:
        only after a write that stopped half way)."""
        return count_actions(self._records, {"ks": {"$gte": f"{feed}|", "$lt": f"{feed}|{TOP}"}})

    def recount(self, feed: str, after: int, upto: int) -> int:
        """Count again, from the records, the days of the calls whose change numbers are in
        (after, upto]; returns how many days."""
        span = {"$gt": seq_key(feed, after), "$lte": seq_key(feed, upto)}
        days = set()
        for doc in self._records.find({"ks": span}):
            c = contribution(doc["record"], doc.get("t"))
            if c is not None:
                days.add(c.day)
        for day in sorted(days):
            self._recount_day(feed, day)
        return len(days)

    def _recount_day(self, feed: str, day: date) -> None:
        """Make a day's roll-ups what its live calls count (and move its months by as much)."""
        low = datetime.combine(day - timedelta(days=1), datetime.min.time(), UTC)
        high = low + timedelta(days=3)  # every instant whose day, in any zone, is `day`
        span = {"$gte": f"{feed}|{time_text(low)}", "$lt": f"{feed}|{time_text(high)}"}
        fresh = RollupDeltas(feed)
        for doc in self._records.find({"kt": span, "deleted_at": None}):
            c = contribution(doc["record"], doc.get("t"))
            if c is not None and c.day == day:
                fresh.add(c, +1, months=False)
        whole = self._rollups.find_one({"_id": f"{feed}|d|{ALL}|company|{day}"}) or {}
        companies = {ALL, *(whole.get("company") or {}).keys()}
        dims = ("all", *DIMENSIONS)
        ids = {f"{feed}|d|{c}|{d}|{day}" for c in companies for d in dims}
        ids |= {f"{feed}|d|{ALL}|company|{day}"} | set(fresh.docs)
        held = {d["_id"]: _flat(d) for d in by_ids(self._rollups, sorted(ids))}
        month = day.isoformat()[:7]
        ops = []
        for doc_id in sorted(ids):
            want = fresh.docs.get(doc_id, {})
            have = held.get(doc_id, {})
            delta = {k: want.get(k, 0) - have.get(k, 0) for k in set(want) | set(have)}
            delta = {k: v for k, v in delta.items() if v}
            if delta:
                month_id = doc_id.replace("|d|", "|m|", 1).rsplit("|", 1)[0] + f"|{month}"
                account = f"|d|{ALL}|" in doc_id  # a company has days only
                for key in (doc_id, month_id) if account else (doc_id,):
                    change = {"$inc": delta, "$setOnInsert": {"k": key}}
                    ops.append(UpdateOne({"_id": key}, change, upsert=True))
        if ops:
            self._rollups.bulk_write(ops, ordered=True)

    def mark_deleted(self, stream: Stream, feed: str, ids: list[str]) -> int:
        if not ids:
            return 0
        keys = [f"{feed}|{i}" for i in ids]
        docs = [d for d in by_ids(self._records, keys) if d.get("deleted_at") is None]
        if not docs:
            return 0
        last = self._take_numbers(feed, len(docs), stream)
        numbers = iter(range(last - len(docs) + 1, last + 1))
        now = utcnow()
        rollups = RollupDeltas(feed)
        moves: dict[str, int] = defaultdict(int)
        ops = []
        for doc in docs:
            seq = next(numbers)
            moves["deleted"] += 1
            moves[str(doc.get("last_action"))] -= 1
            change = {
                "last_action": "deleted",
                "deleted_at": now,
                "changed_at": now,
                "seq": seq,
                "ks": seq_key(feed, seq),
            }
            ops.append(UpdateOne({"_id": doc["_id"]}, {"$set": change}))
            if stream.name == "calls":
                rollups.add(contribution(doc["record"], doc.get("t")), -1)
        self._records.bulk_write(ops, ordered=False)
        self._write_rollups(rollups)
        self._commit(feed, last, moves)
        return len(docs)

    def ids_between(
        self, feed: str, since: datetime | None, until: datetime | None
    ) -> dict[str, datetime | None]:
        low = f"{feed}|{time_text(since)}" if since else f"{feed}|"
        high = f"{feed}|{time_text(until)}{TOP}" if until else f"{feed}|{TOP}"
        found = self._records.find({"kt": {"$gte": low, "$lt": high}})
        return {d["id"]: d.get("t") for d in found if d.get("deleted_at") is None}

    # --- reading -------------------------------------------------------------------------

    def read(self, query: RecordQuery) -> RecordPage:
        time_sort = query.sort in (None, query.stream.time_field)
        if time_sort and query.stream.time_field:
            return self._read_by_time(query)
        return self._read_sorted(query)

    def _match(self, query: RecordQuery) -> dict[str, Any]:
        match: dict[str, Any] = {"deleted_at": None}
        if query.company_id:
            match["company_id"] = query.company_id
        for name, value in query.filters:
            match["tags" if name == "tag" else name] = value
        if query.search:
            pattern = {"$regex": re.escape(query.search), "$options": "i"}
            match["$or"] = [{f"record.{f}": pattern} for f in query.stream.search_fields]
        return match

    def _read_by_time(self, query: RecordQuery) -> RecordPage:
        """Newest (or oldest) first by the time key, in bands of time: the first as long as
        the records a second the last read of this feed (and filters) found say holds the
        page (an hour when none did), each next one sized by the records the last one held
        (8x wider after an empty one). SecantusDB pushes no limit down: a band's records are
        all read on the server, so a read asks about as many as it shows, in one band when
        the feed's density is known; each band is sorted and cut there, so only the records
        the page still needs come back."""
        feed = query.feed
        low = f"{feed}|{time_text(query.since)}" if query.since else f"{feed}|"
        high = f"{feed}|{time_text(query.until)}" if query.until else f"{feed}|{TOP}"
        if query.after is not None:
            if query.descending:
                high = min(high, str(query.after[0]))
            else:
                low = max(low, str(query.after[0]) + "\x00")
        match = self._match(query)
        density = (feed, query.company_id, query.filters, query.search)
        rate = self._rates.get(density)
        band = FIRST_BAND
        if rate:
            band = timedelta(seconds=min(BAND_MAX_SECONDS, BAND_MARGIN * (query.limit + 1) / rate))
        order = -1 if query.descending else 1
        found: list[dict[str, Any]] = []
        now = utcnow()

        def take(lower: str, upper: str) -> int:
            wanted = query.limit + 1 - len(found)
            span = {**match, "kt": {"$gte": lower, "$lt": upper}}
            docs = list(self._records.find(span).sort("kt", order).limit(wanted))
            found.extend(docs)
            return len(docs)

        if query.descending:
            # The first band reaches up to `high` (the top: records dated ahead too), so it
            # starts now, not a day ahead (a day of nothing made a first page two reads).
            edge = _moment_of(high, feed) or now
            upper = high
            while upper > low:
                edge -= band
                lower = max(low, f"{feed}|{time_text(edge)}") if edge > FLOOR else low
                got = take(lower, upper)
                if len(found) > query.limit:
                    break
                upper, band = lower, _next_band(band, got, query.limit + 1 - len(found))
        else:
            edge = _moment_of(low, feed) or FLOOR
            lower = low
            while lower < high:
                edge += band
                upper = min(high, f"{feed}|{time_text(edge)}") if edge < now + FUTURE else high
                got = take(lower, upper)
                if len(found) > query.limit:
                    break
                lower, band = upper, _next_band(band, got, query.limit + 1 - len(found))
        self._note_rate(density, found)
        page = found[: query.limit]
        last = (page[-1]["kt"],) if page else None
        return RecordPage([_shown(d) for d in page], len(found) > query.limit, last)

    def _note_rate(self, density: tuple[Any, ...], found: list[dict[str, Any]]) -> None:
        """The records a second between the first and the last record a read found."""
        times = [d.get("t") for d in (found[0], found[-1])] if len(found) > 1 else []
        if len(times) == 2 and isinstance(times[0], datetime) and isinstance(times[1], datetime):
            seconds = abs((times[0] - times[1]).total_seconds())
            if seconds > 0:
                if len(self._rates) >= RATES_KEPT:
                    self._rates.clear()
                self._rates[density] = (len(found) - 1) / seconds

    def _read_sorted(self, query: RecordQuery) -> RecordPage:
        """By another field: the feed's records in range, sorted here (streams walked whole
        are small; a windowed stream sorts only by its time)."""
        feed = query.feed
        match = self._match(query)
        low = f"{feed}|{time_text(query.since)}" if query.since else f"{feed}|"
        high = f"{feed}|{time_text(query.until)}" if query.until else f"{feed}|{TOP}"
        docs = list(self._records.find({**match, "kt": {"$gte": low, "$lt": high}}))
        name = query.sort or "id"
        # Records without a value come last, ascending and descending alike (the listings'
        # rule, docs/api.md): the key that sorts after every value, or before, as reversed.
        none = "" if query.descending else TOP

        def key(d: dict[str, Any]) -> tuple[Any, ...]:
            value = d["record"].get(name) if name != "id" else d["id"]
            if name == "created_at":
                value = time_text(as_utc(value))
            return (sort_text(value) if value is not None else none, d["id"])

        docs.sort(key=key, reverse=query.descending)
        if query.after is not None:
            after = tuple(query.after)
            docs = [d for d in docs if (key(d) < after if query.descending else key(d) > after)]
        page = docs[: query.limit]
        last = key(page[-1]) if page else None
        return RecordPage([_shown(d) for d in page], len(docs) > query.limit, last)

    def changes(
        self,
        feed: str,
        after: int,
        actions: frozenset[Action],
        limit: int,
        modified_after: datetime | None = None,
    ) -> ChangePage:
        committed = self.committed(feed)
        found: list[dict[str, Any]] = []
        edge, band = after, max(limit * 2, 100)
        # A range of `ks`; for updates or deletions only, that range of each action's own
        # (`rare_actions`), so a feed of 200,000 additions is not read for its few deletions
        # (with additions asked for, most of a range is what is wanted). `changed_at` is
        # checked here: a second range in the query would take it off the index.
        wanted: list[dict[str, Any]] = [{}]
        if "added" not in actions:
            wanted = [{"last_action": a} for a in sorted(actions)]
        elif not set(ACTIONS) <= actions:
            wanted = [{"last_action": {"$in": sorted(actions)}}]
        while edge < committed and len(found) <= limit:
            top = min(committed, edge + band)
            part = {"$gt": seq_key(feed, edge), "$lte": seq_key(feed, top)}
            docs = [d for match in wanted for d in self._records.find({**match, "ks": part})]
            if modified_after is not None:
                docs = [d for d in docs if _after(d.get("changed_at"), modified_after)]
            found.extend(sorted(docs, key=lambda d: d["ks"]))
            edge, band = top, band * 4
        has_more = len(found) > limit
        changes = [change_of(d) for d in found[:limit]]
        next_after = changes[-1].seq if has_more else max(committed, after)
        return ChangePage(changes=changes, has_more=has_more, next_after=next_after)

    def committed(self, feed: str) -> int:
        state = self._feeds.find_one({"_id": feed}) or {}
        return int(state.get("committed", 0))

    def counts(self, feed: str) -> dict[str, int]:
        """The feed's records by last action, as its last committed write left them (a
        feed not written since the counts were kept is counted from its records)."""
        state = self._feeds.find_one({"_id": feed}) or {}
        if not state.get("seq"):
            return dict.fromkeys(ACTIONS, 0)
        kept = state.get("actions")
        if not isinstance(kept, dict):
            return self._count_actions(feed)
        return {action: int(kept.get(action, 0)) for action in ACTIONS}

    def rollups(
        self,
        feed: str,
        first: date,
        last: date,
        by_day: bool = False,
        company: str | None = None,
        dim: str = "all",
    ) -> list[dict[str, Any]]:
        """One dimension's documents (`all`, or what a summary groups by) of one company (its
        days: it has no months) or of the whole account: the month documents of the whole
        months inside [first, last] (unless `by_day`), and the day documents of the rest:
        three range reads at most."""
        who = f"{_cell_key(company) if company else ALL}|{dim}"
        if by_day or company:
            return self._range(f"{feed}|d|{who}|{first}", f"{feed}|d|{who}|{last}{TOP}")
        head_end = _month_end(first)
        whole_from = first if first.day == 1 else head_end + timedelta(days=1)
        tail_from = last.replace(day=1) if _month_end(last) != last else last + timedelta(1)
        if whole_from >= tail_from:  # no whole month: days only
            return self._range(f"{feed}|d|{who}|{first}", f"{feed}|d|{who}|{last}{TOP}")
        docs: list[dict[str, Any]] = []
        if whole_from > first:
            docs += self._range(f"{feed}|d|{who}|{first}", f"{feed}|d|{who}|{head_end}{TOP}")
        last_whole = (tail_from - timedelta(days=1)).isoformat()[:7]
        docs += self._range(
            f"{feed}|m|{who}|{whole_from.isoformat()[:7]}", f"{feed}|m|{who}|{last_whole}{TOP}"
        )
        if tail_from <= last:
            docs += self._range(f"{feed}|d|{who}|{tail_from}", f"{feed}|d|{who}|{last}{TOP}")
        return docs

    def _range(self, low: str, high: str) -> list[dict[str, Any]]:
        # On `k` (the id again, with an index of its own): SecantusDB reads an `_id` range by
        # scanning the collection.
        return list(self._rollups.find({"k": {"$gte": low, "$lt": high}}))

    # --- sync state ------------------------------------------------------------------------

    def state(self, feed: str) -> StreamState:
        doc = self._state.find_one({"_id": feed})
        if doc is None:
            return StreamState(feed=feed)
        return _state_of(doc)

    def unfinished_backfills(self) -> list[StreamState]:
        # `finished_at` first: its index serves the read (SecantusDB takes the first clause
        # an index serves).
        docs = self._state.find({"finished_at": None, "started_at": {"$ne": None}})
        return [_state_of(doc) for doc in docs]

    def save_state(self, state: StreamState) -> None:
        fields = asdict(state)
        self._state.replace_one({"_id": fields.pop("feed")}, fields, upsert=True)

    def update_window(
        self, feed: str, index: int, cursor: str | None, done: bool, records: int
    ) -> None:
        w = f"windows.{index}"
        self._state.update_one(
            {"_id": feed},
            {
                "$set": {f"{w}.cursor": cursor, f"{w}.done": done},
                "$inc": {f"{w}.pages": 1, f"{w}.records": records, "requests": 1},
            },
        )


def _nested(flat: dict[str, int]) -> dict[str, Any]:
    """Dotted counter paths (`source.Direct.calls`) as the document they make (cells hold
    no `.`: `_cell_key`)."""
    doc: dict[str, Any] = {}
    for path, n in flat.items():
        *parents, name = path.split(".")
        at = doc
        for part in parents:
            at = at.setdefault(part, {})
        at[name] = n
    return doc


FIRST_BAND = timedelta(hours=1)
BAND_MARGIN = 1.6
"""A first band holds this many times the records the page needs at the last read's
density: calls come by day, not by night, so a band sized at 1.25x fell short on 16 pages of
200 and took a second read. Measured alternately, 20,000 calls, 200 pages, quiet machine:
1.25x p50 17.9/16.7 ms, p99 45.2/42.1 ms; 1.6x p50 14.8-17.3 ms, p99 27.8-50.1 ms (one
read for 197 of 200 pages); 2x p50 18 ms, p99 47-57 ms (reading the larger bands costs
more than the second reads it saves)."""
BAND_MAX_SECONDS = 400 * 86400.0
"""The longest first band a density asks for (a feed is at most 25 months)."""
RATES_KEPT = 1024
"""Feeds (and filters) whose density a store keeps; all forgotten past that."""


def _next_band(band: timedelta, got: int, missing: int) -> timedelta:
    """The next band's length: what the last one's density says holds the missing records,
    with a quarter more, and at least twice the last (8x after an empty one)."""
    if got == 0:
        return band * 8
    return band * max(2.0, min(64.0, 1.25 * missing / got))


def _flat(doc: dict[str, Any], prefix: str = "") -> dict[str, int]:
    """A roll-up document's counters by their dotted paths (`source.Direct.calls`)."""
    found: dict[str, int] = {}
    for key, value in doc.items():
        if key == "_id":
            continue
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            found.update(_flat(value, path + "."))
        elif isinstance(value, int):
            found[path] = value
    return found


def _after(moment: Any, bound: datetime) -> bool:
    """`moment > bound` as MongoDB's `$gt` says it of a stored date (milliseconds)."""
    if not isinstance(moment, datetime):
        return False
    bound = bound.replace(microsecond=bound.microsecond // 1000 * 1000)
    return moment > (bound if bound.tzinfo else bound.replace(tzinfo=UTC))


def _month_end(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


def _moment_of(key: str, feed: str) -> datetime | None:
    """The instant a time key (or a bound made of one) starts at; None at the open ends."""
    rest = key[len(feed) + 1 :].split("|", 1)[0].rstrip(TOP)
    if not rest:
        return None
    try:
        return datetime.strptime(rest[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
    except ValueError:
        return None


def _shown(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored record as the records API shows it: as CallRail sent it, with its history."""
    return {
        **doc["record"],
        "tracking": {**history(doc), "sources": sorted((doc.get("sources") or {}).keys())},
    }


def summarize(docs: Iterable[dict[str, Any]], group_by: str | None) -> dict[str, Any]:
    """Totals and groups from one dimension's roll-up documents of one company or of the
    account (see the module docstring): `all` documents for totals and groups by day, week,
    month or (a company's own) company; a dimension's documents for its groups."""
    total: dict[str, int] = dict.fromkeys(COUNTERS, 0)
    groups: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTERS, 0))
    for doc in docs:
        who, dim, when = doc["_id"].rsplit("|", 3)[1:]
        if group_by in DIMENSIONS or group_by == "company":
            # A dimension's document of the account, or a company's `all` that holds its
            # dimensions too (a company's documents have no `company`: grouped by who below).
            for key, counts in (doc.get(group_by) or {}).items():
                for name in COUNTERS:
                    groups[cell_name(key)][name] += int(counts.get(name, 0))
        if dim != "all":
            continue
        cells = doc.get("all") or {}
        for name in COUNTERS:
            total[name] += int(cells.get(name, 0))
        if group_by is None or group_by in DIMENSIONS or (group_by == "company" and who == ALL):
            continue  # no group, or groups from the dimension's cells above
        if group_by == "company":  # one company's own documents
            key = cell_name(who)
        elif group_by == "day":
            key = when
        elif group_by == "week":
            day = date.fromisoformat(when)
            key = (day - timedelta(days=day.weekday())).isoformat()
        else:
            key = when[:7]
        for name in COUNTERS:
            groups[key][name] += int(cells.get(name, 0))
    return {"total": total, "groups": groups}


def _state_of(doc: dict[str, Any]) -> StreamState:
    return StreamState(
        feed=str(doc["_id"]),
        windows=list(doc.get("windows") or []),
        started_at=doc.get("started_at"),
        finished_at=doc.get("finished_at"),
        requests=int(doc.get("requests") or 0),
        last_run=doc.get("last_run"),
        planned_from=doc.get("planned_from"),
    )
