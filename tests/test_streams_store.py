"""The stream record store on the MongoDB wire server: one record per call whoever wrote it
first, changes numbered in order, roll-ups that agree with the calls, pages by time."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from callrail_sync.stores import Stores
from callrail_sync.stores.streams import (
    DIMENSIONS,
    MongoStreamStore,
    RecordQuery,
    feed_id,
    summarize,
)
from callrail_sync.streams import STREAMS

CALLS = STREAMS["calls"]
OWNER, ACCOUNT = "64f1c2a9e4b0a1b2c3d4e5f6", "ACC" + "5" * 32
FEED = feed_id(OWNER, "calls", ACCOUNT)
ZONES = {"COM1": "America/New_York", "COM2": "Europe/Berlin"}
SOURCES = ("Google Organic", "Direct", "Facebook.com")


def make_calls(n: int, seed: int = 3, days: int = 60) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    end = datetime(2026, 11, 30, tzinfo=UTC)
    calls = []
    for i in range(n):
        company = rng.choice(list(ZONES))
        at = end - timedelta(seconds=rng.randint(0, days * 86400))
        answered = rng.random() < 0.6
        calls.append(
            {
                "id": f"CAL{i:032x}",
                "company_id": company,
                "company_time_zone": ZONES[company],
                "start_time": at.astimezone(ZoneInfo(ZONES[company])).isoformat(),
                "answered": answered,
                "voicemail": not answered and rng.random() < 0.5,
                "direction": "inbound",
                "duration": rng.randint(0, 600) if answered else 0,
                "first_call": rng.random() < 0.3,
                "source": rng.choice(SOURCES),
                "campaign": rng.choice(("spring", None)),
                "keywords": rng.choice(("plumber", "")),
                "lead_status": rng.choice(("good_lead", "not_a_lead", None)),
                "customer_name": f"Caller {i}",
            }
        )
    return calls


def write(stores: Stores, calls: list[dict[str, Any]], source: str = "history") -> Any:
    return stores.streams.write_page(CALLS, FEED, OWNER, ACCOUNT, calls, source)


def day_of(call: dict[str, Any]) -> date:
    moment = datetime.fromisoformat(call["start_time"])
    return moment.astimezone(ZoneInfo(call["company_time_zone"])).date()


def by_hand(calls: list[dict[str, Any]], group: str) -> dict[str, Counter[str]]:
    groups: dict[str, Counter[str]] = {}
    for c in calls:
        day = day_of(c)
        key = {
            "source": c["source"],
            "company": c["company_id"],
            "day": day.isoformat(),
            "month": day.isoformat()[:7],
        }[group]
        counts = groups.setdefault(key, Counter())
        counts["calls"] += 1
        counts["answered"] += int(c["answered"])
        counts["duration"] += c["duration"]
        counts["leads"] += int(c["lead_status"] == "good_lead")
    return groups


def summary(
    stores: Stores, group: str, first: date, last: date, company: str | None = None
) -> dict[str, dict[str, int]]:
    docs = stores.streams.rollups(FEED, first, last, by_day=group == "day", company=company)
    if group in DIMENSIONS or (group == "company" and company is None):
        docs += stores.streams.rollups(FEED, first, last, company=company, dim=group)
    return dict(summarize(docs, group)["groups"])


def test_each_call_is_written_once_then_only_when_it_changes(stores: Stores) -> None:
    calls = make_calls(20)
    first = write(stores, calls)
    assert (first.added, first.updated, first.unchanged) == (20, 0, 0)
    again = write(stores, calls)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 20)
    edited = dict(calls[4], note="called back")
    assert write(stores, [edited]).updated == 1
    page = stores.streams.changes(FEED, 0, frozenset({"added", "updated", "deleted"}), 100)
    assert len(page.changes) == 20 and not page.has_more
    assert [c.seq for c in page.changes] == sorted(c.seq for c in page.changes)
    assert page.changes[-1].id == calls[4]["id"] and page.changes[-1].action == "updated"
    assert page.changes[-1].record["note"] == "called back"
    later = stores.streams.changes(FEED, page.next_after, frozenset({"added"}), 100)
    assert later.changes == []


def test_a_delivery_and_the_history_make_one_record_whichever_came_first(stores: Stores) -> None:
    call = make_calls(1)[0]
    delivered = {
        "id": call["id"],
        "start_time": call["start_time"],
        "company_id": "COM1",
        "customer_name": "From the webhook",
        "recording_redirect": "https://r",
    }
    write(stores, [delivered], source="webhook")
    write(stores, [call], source="history")
    page = stores.streams.read(RecordQuery(FEED, CALLS, limit=10))
    assert len(page.records) == 1
    record = page.records[0]
    assert record["customer_name"] == call["customer_name"]  # the history's word, read later
    assert record["recording_redirect"] == "https://r"  # only the delivery said it
    assert record["tracking"]["sources"] == ["history", "webhook"]
    assert sum(stores.streams.counts(FEED).values()) == 1


def test_roll_ups_agree_with_the_calls_through_edits_and_deletions(stores: Stores) -> None:
    calls = make_calls(200)
    for start in range(0, 200, 50):
        write(stores, calls[start : start + 50])
    # CallRail edits some calls (answered flips, source changes) and some vanish (spam).
    edited = [dict(c, answered=not c["answered"], source="Direct") for c in calls[:25]]
    write(stores, edited)
    gone = [c["id"] for c in calls[25:35]]
    assert stores.streams.mark_deleted(CALLS, FEED, gone) == 10
    now = {c["id"]: c for c in calls}
    now.update({c["id"]: c for c in edited})
    for call_id in gone:
        del now[call_id]
    live = list(now.values())
    ranges = [
        (date(2026, 9, 1), date(2026, 12, 31)),  # whole months
        (date(2026, 10, 10), date(2026, 11, 20)),  # a part, a whole month, a part
        (date(2026, 10, 27), date(2026, 10, 27)),  # one day
    ]
    # That day holds both companies (two time zones), an edited call and a deleted one.
    day = [c for c in calls if day_of(c) == date(2026, 10, 27)]
    assert {c["company_id"] for c in day} == set(ZONES)
    assert {c["id"] for c in day} & set(gone) and {c["id"] for c in day} & {c["id"] for c in edited}
    for first, last in ranges:
        for company in (None, "COM1"):
            kept = [
                c for c in live if first <= day_of(c) <= last and company in (None, c["company_id"])
            ]
            for group in ("source", "company", "day", "month"):
                expected = by_hand(kept, group)
                got = summary(stores, group, first, last, company)
                got = {k: v for k, v in got.items() if v["calls"]}
                assert set(got) == set(expected), (group, first, last, company)
                for key, counts in expected.items():
                    for name in ("calls", "answered", "duration", "leads"):
                        assert got[key][name] == counts[name], (group, key, name)


def test_pages_by_time_cover_the_range_once_in_order(stores: Stores) -> None:
    calls = make_calls(150, days=90)
    for start in range(0, 150, 50):
        write(stores, calls[start : start + 50])
    instants = {c["id"]: datetime.fromisoformat(c["start_time"]) for c in calls}
    since = datetime(2026, 10, 1, tzinfo=UTC)
    until = datetime(2026, 11, 15, tzinfo=UTC)
    wanted = [i for i, t in instants.items() if since <= t < until and now_answered(calls, i)]
    for descending in (True, False):
        seen: list[str] = []
        query = RecordQuery(
            FEED,
            CALLS,
            since=since,
            until=until,
            descending=descending,
            filters=(("answer_status", "answered"),),
            limit=17,
        )
        while True:
            page = stores.streams.read(query)
            seen += [r["id"] for r in page.records]
            if not page.has_more:
                break
            query = RecordQuery(**{**query.__dict__, "after": page.last})
        assert sorted(seen) == sorted(wanted)
        times = [instants[i] for i in seen]
        assert times == sorted(times, reverse=descending)


def now_answered(calls: list[dict[str, Any]], call_id: str) -> bool:
    return next(c for c in calls if c["id"] == call_id)["answered"]


def test_a_small_stream_sorts_by_name_and_searches(stores: Stores) -> None:
    trackers = STREAMS["trackers"]
    feed = feed_id(OWNER, "trackers", ACCOUNT)
    rows = [
        {
            "id": f"TRK{i}",
            "name": f"Tracker {chr(90 - i)}",
            "created_at": "2026-01-01T00:00:00Z",
            "status": "active",
        }
        for i in range(12)
    ]
    stores.streams.write_page(trackers, feed, OWNER, ACCOUNT, rows)
    names: list[str] = []
    query = RecordQuery(feed, trackers, sort="name", descending=False, limit=5)
    while True:
        page = stores.streams.read(query)
        names += [r["name"] for r in page.records]
        if not page.has_more:
            break
        query = RecordQuery(**{**query.__dict__, "after": page.last})
    assert names == sorted(r["name"] for r in rows)
    found = stores.streams.read(RecordQuery(feed, trackers, search="tracker z", limit=5))
    assert [r["id"] for r in found.records] == ["TRK0"]


def test_a_write_stopped_half_way_is_counted_again_by_the_next(
    stores: Stores, mongo_server: str
) -> None:
    calls = make_calls(300, seed=11)
    write(stores, calls[:100])
    with MongoClient(mongo_server) as admin:
        # MongoDB lets the next write's first insert through (its records) and refuses the
        # write after it (its roll-ups: inserts of new documents, updates of the others), as
        # if the worker had died between the two.
        admin.admin.command(
            "configureFailPoint",
            "failCommand",
            mode={"skip": 1, "times": 1},
            data={"failCommands": ["insert", "update"], "errorCode": 2},  # BadValue: not retried
        )
        try:
            with pytest.raises(PyMongoError):
                write(stores, calls[100:200])
        finally:
            admin.admin.command("configureFailPoint", "failCommand", mode="off")
    first, last = date(2026, 9, 1), date(2026, 12, 31)
    short = sum(v["calls"] for v in summary(stores, "source", first, last).values())
    assert short == 100  # the stopped page's calls are stored but not counted
    assert len(stores.streams.ids_between(FEED, None, None)) == 200
    write(stores, calls[200:])  # the next write counts the stopped one's days again
    for company in (None, "COM2"):
        kept = [c for c in calls if company in (None, c["company_id"])]
        for group in ("source", "day", "month", "company"):
            got = summary(stores, group, first, last, company)
            got = {k: v for k, v in got.items() if v["calls"]}
            expected = by_hand(kept, group)
            assert {k: v["calls"] for k, v in got.items()} == {
                k: v["calls"] for k, v in expected.items()
            }, (group, company)
            assert {k: v["duration"] for k, v in got.items()} == {
                k: v["duration"] for k, v in expected.items()
            }
    # The feed's counts by action too: the stopped write's records were never counted.
    expected = {"added": 300, "updated": 0, "deleted": 0}
    assert stores.streams.counts(FEED) == counted_from_records(stores) == expected


class CountingFinds:
    """A collection whose finds are counted, with the documents each brought back."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.finds, self.docs = inner, 0, 0
        self.filters: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def find(self, *args: Any, **kwargs: Any) -> Any:
        self.finds += 1
        self.filters.append(args[0] if args else kwargs.get("filter", {}))
        cursor = self.inner.find(*args, **kwargs)
        counter = self

        class Counted:
            def sort(self, *a: Any) -> Counted:
                cursor.sort(*a)
                return self

            def limit(self, n: int) -> Counted:
                cursor.limit(n)
                return self

            def __iter__(self) -> Any:
                docs = list(cursor)
                counter.docs += len(docs)
                return iter(docs)

        return Counted()


def test_once_a_feeds_density_is_known_a_page_is_about_one_read_of_what_it_shows(
    stores: Stores,
) -> None:
    calls = make_calls(600, days=30)
    for start in range(0, 600, 200):
        write(stores, calls[start : start + 200])
    store = MongoStreamStore(stores.db)  # a store of its own: no density known yet
    counted = CountingFinds(store._records)
    store._records = counted  # type: ignore[assignment]
    query = RecordQuery(FEED, CALLS, limit=50)
    seen: list[str] = []
    reads: list[tuple[int, int]] = []
    while True:
        before = (counted.finds, counted.docs)
        page = store.read(query)
        reads.append((counted.finds - before[0], counted.docs - before[1]))
        seen += [r["id"] for r in page.records]
        if not page.has_more:
            break
        query = RecordQuery(**{**query.__dict__, "after": page.last})
    assert sorted(seen) == sorted(c["id"] for c in calls)
    # Each read brings back at most the page and one more (the bands are cut on the server),
    # and after the first, most pages take one band.
    assert all(docs <= 51 for _, docs in reads)
    later = [finds for finds, _ in reads[1:-1]]
    assert sum(later) <= len(later) * 1.5, reads


def counted_from_records(stores: Stores) -> dict[str, int]:
    docs = stores.db["callrail_stream_records"].find({"feed": FEED})
    found = Counter(str(d["last_action"]) for d in docs)
    return {a: found.get(a, 0) for a in ("added", "updated", "deleted")}


def test_counts_by_action_are_kept_with_the_feed_and_read_without_its_records(
    stores: Stores,
) -> None:
    calls = make_calls(300, seed=5)
    write(stores, calls[:200])
    write(stores, [dict(c, customer_name="Edited") for c in calls[:30]] + calls[200:])
    stores.streams.mark_deleted(CALLS, FEED, [c["id"] for c in calls[20:50]])  # 10 edited ones
    write(stores, calls[40:45])  # five come back: added again
    expected = {"added": 300 - 30 - 20 + 5, "updated": 20, "deleted": 25}
    assert counted_from_records(stores) == expected
    store = MongoStreamStore(stores.db)
    store._records = None  # type: ignore[assignment]  # counts must not read the records
    assert store.counts(FEED) == expected
    # A feed written before the counts were kept: counted from its records, then kept again
    # by its next write.
    stores.db["callrail_feeds"].update_one({"_id": FEED}, {"$unset": {"actions": ""}})
    assert stores.streams.counts(FEED) == expected
    write(stores, [dict(calls[100], customer_name="Edited")])  # an added one is updated
    assert "actions" in (stores.db["callrail_feeds"].find_one({"_id": FEED}) or {})
    assert store.counts(FEED) == {**expected, "added": expected["added"] - 1, "updated": 21}
    assert stores.streams.counts(feed_id(OWNER, "calls", "ACC" + "6" * 32)) == dict.fromkeys(
        ("added", "updated", "deleted"), 0
    )


def test_changes_of_one_action_read_only_that_actions_records(stores: Stores) -> None:
    calls = make_calls(200, seed=9)
    for start in range(0, 200, 50):
        write(stores, calls[start : start + 50])
    gone = sorted(c["id"] for c in calls[50:60])
    stores.streams.mark_deleted(CALLS, FEED, gone)
    write(stores, [dict(c, customer_name="Edited") for c in calls[150:155]])
    store = MongoStreamStore(stores.db)
    counted = CountingFinds(store._records)
    store._records = counted  # type: ignore[assignment]
    page = store.changes(FEED, 0, frozenset({"deleted"}), 100)
    assert sorted(c.id for c in page.changes) == gone and not page.has_more
    assert counted.docs == 10
    # ...and the 195 others are not examined: the finds go through the partial index.
    examined = sum(
        stores.db.command(
            "explain", {"find": "callrail_stream_records", "filter": f}, verbosity="executionStats"
        )["executionStats"]["totalDocsExamined"]
        for f in counted.filters
    )
    assert examined == 10, examined
    both = store.changes(FEED, 0, frozenset({"deleted", "updated"}), 12)
    assert [c.seq for c in both.changes] == sorted(c.seq for c in both.changes)
    assert len(both.changes) == 12 and both.has_more
    rest = store.changes(FEED, both.next_after, frozenset({"deleted", "updated"}), 100)
    assert {c.id for c in both.changes + rest.changes} == set(gone) | {
        c["id"] for c in calls[150:155]
    }
    last = max(c.changed_at for c in page.changes)
    assert store.changes(FEED, 0, frozenset({"deleted"}), 100, modified_after=last).changes == []
    earlier = last - timedelta(minutes=1)
    assert len(store.changes(FEED, 0, frozenset({"deleted"}), 100, earlier).changes) == 10
