"""One sorting rule, the simulator's and the shim's: records without a value for the sort field
(`disabled_at` of an active company) come last, ascending and descending alike; the rest sort
by their value (timestamps by their instant), `id` breaking ties."""

from __future__ import annotations

from datetime import datetime

import requests

from callrail_sync.stores.snapshots import NULLABLE, PageQuery
from callrail_sync.stores.streams import RecordQuery, feed_id
from callrail_sync.streams import STREAMS

from .conftest import OWNER

P = "/v1/e/callrail"


def instant(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def listing(shim_url: str, token: str, query: str) -> dict:
    """A listing page, syncing it first when there is no snapshot yet."""
    headers = {"Authorization": f"Bearer {token}"}
    answer = requests.get(f"{shim_url}{P}/{query}", headers=headers, timeout=30)
    if answer.status_code == 202:
        job = answer.json()["data"]["status_url"]
        done = requests.get(f"{shim_url}{job}?wait=25", headers=headers, timeout=40).json()
        assert done["data"]["status"] == "succeeded", done
        answer = requests.get(f"{shim_url}{P}/{query}", headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def test_disabled_at_puts_nulls_last_both_ways_as_the_simulator_does(
    worker, owner, sim, sim_data, api_key, shim_url, token
):
    account = sim_data.accounts_by_key[api_key][0]
    base = f"companies?account_id={account}&disabled=true&per_page=250"
    upstream = {"Authorization": f'Token token="{api_key}"'}
    for sort, order in (("disabled_at", "asc"), ("-disabled_at", "desc")):
        companies = listing(shim_url, token, f"{base}&sort={sort}")["companies"]
        stamps = [c["disabled_at"] for c in companies]
        valued = [s for s in stamps if s is not None]
        assert 0 < len(valued) < len(stamps)  # both kinds are there
        assert stamps == valued + [None] * (len(stamps) - len(valued))  # nulls last
        instants = [instant(s) for s in valued]
        assert instants == sorted(instants, reverse=order == "desc")
        # The simulator, asked the same, orders the companies that have a value the same way
        # and also ends with those that have none.
        theirs = requests.get(
            f"{sim.base_url}/a/{account}/companies.json",
            params={"sort": "disabled_at", "order": order, "per_page": 250},
            headers=upstream,
            timeout=10,
        ).json()["companies"]
        assert [c["id"] for c in theirs[: len(valued)]] == [c["id"] for c in companies][
            : len(valued)
        ]
        assert all(c["disabled_at"] is None for c in theirs[len(valued) :])


def test_every_nullable_sort_field_puts_records_without_a_value_last(stores):
    """`created_at`, `status` and `time_zone` as well: CallRail may leave any of them out."""
    snapshot = "snap_nulls"
    stores.snapshots.begin(snapshot, OWNER, "companies", "ACC1")
    records = [
        {
            "id": f"COM{i}",
            "name": f"Co {i}",
            "status": status,
            "time_zone": zone,
            "created_at": created,
            "disabled_at": disabled,
        }
        for i, (status, zone, created, disabled) in enumerate(
            [
                ("active", "America/Denver", "2024-01-02T10:00:00.000-07:00", None),
                (None, None, None, None),
                (
                    "disabled",
                    "America/New_York",
                    "2023-05-01T08:00:00.000-04:00",
                    "2024-06-01T08:00:00.000-04:00",
                ),
                ("active", None, "2025-03-03T00:00:00.000+00:00", None),
                ("disabled", "America/Chicago", None, "2024-02-01T08:00:00.000-06:00"),
            ]
        )
    ]
    stores.snapshots.write_records("companies", snapshot, OWNER, records)
    for field in NULLABLE:
        for descending in (False, True):
            query = PageQuery(per_page=50, sort=field, descending=descending)
            page = stores.snapshots.read_page("companies", snapshot, query)
            values = [r.get(field) for r in page]
            present = [v for v in values if v is not None]
            assert values == present + [None] * (len(values) - len(present)), (field, values)
            key = instant if field.endswith("_at") else str
            assert [key(v) for v in present] == sorted(map(key, present), reverse=descending)
            assert all(not k.startswith("_null_") for r in page for k in r)  # ours, not shown


def test_stream_records_follow_the_same_rule_across_pages(stores):
    """GET /records/{stream} sorted by a field some records lack (a tracker without a name):
    those come last both ways, and paging by cursor neither repeats nor skips one."""

    trackers = STREAMS["trackers"]
    feed = feed_id(OWNER, "trackers", "ACC1")
    rows = [
        {"id": f"TRK{i:02}", "name": None if i % 3 == 0 else f"Tracker {chr(75 - i)}"}
        for i in range(11)
    ]
    stores.streams.write_page(trackers, feed, OWNER, "ACC1", rows)
    for descending in (False, True):
        names: list[str | None] = []
        query = RecordQuery(feed, trackers, sort="name", descending=descending, limit=3)
        while True:
            page = stores.streams.read(query)
            names += [r.get("name") for r in page.records]
            if not page.has_more:
                break
            query = RecordQuery(**{**query.__dict__, "after": page.last})
        named = [n for n in names if n is not None]
        assert names == named + [None] * 4  # the four without a name, last
        assert named == sorted(named, reverse=descending)


def test_calls_sort_by_duration_as_numbers_not_text(stores):
    """`sort=duration`: a 100 s call comes after a 20 s one (as text it came before)."""
    from .test_streams_store import ACCOUNT, CALLS, FEED, make_calls
    from .test_streams_store import OWNER as STREAM_OWNER

    calls = make_calls(40, seed=5)
    for call, seconds in zip(calls, [7, 20, 100, 3, 1000, 45, 0, 9] * 5, strict=True):
        call["duration"] = seconds
    stores.streams.write_page(CALLS, FEED, STREAM_OWNER, ACCOUNT, calls, "history")
    for descending in (False, True):
        seen: list[int] = []
        query = RecordQuery(FEED, CALLS, sort="duration", descending=descending, limit=7)
        while True:
            page = stores.streams.read(query)
            seen += [r["duration"] for r in page.records]
            if not page.has_more:
                break
            query = RecordQuery(**{**query.__dict__, "after": page.last})
        assert seen == sorted(seen, reverse=descending) and len(seen) == 40
