"""The stream table and the backfill's plan: windows, their parameters, the request count."""

from __future__ import annotations

import math
import random
import threading
from datetime import date, timedelta

import pytest

from callrail_sync.callrail import streams as remote
from callrail_sync.config import Settings
from callrail_sync.streams import RECORD_STREAMS, STREAMS, fields_for


def test_every_stream_of_the_issue_is_a_row_and_only_calls_page_relatively() -> None:
    assert set(STREAMS) == {
        "accounts",
        "companies",
        "calls",
        "form_submissions",
        "conversations",
        "trackers",
        "tags",
        "users",
    }
    assert [s.name for s in STREAMS.values() if s.paging == "relative"] == ["calls"]
    assert STREAMS["conversations"].path == "text-messages.json"
    assert STREAMS["conversations"].records_key == "conversations"
    assert STREAMS["calls"].day_counts == "calls/timeseries.json"
    assert {s.name for s in STREAMS.values() if s.windowed} == {
        "calls",
        "form_submissions",
        "conversations",
    }
    assert set(RECORD_STREAMS) == set(STREAMS) - {"accounts", "companies"}


def test_the_fields_asked_for_are_the_needed_ones_then_the_chosen_known_ones() -> None:
    calls = STREAMS["calls"]
    asked = fields_for(calls, ["gclid", "no_such_field", "source", "gclid"])
    assert asked[: len(calls.fields_always)] == list(calls.fields_always)
    assert asked[len(calls.fields_always) :] == ["gclid"]  # known, not twice, not unknown


def test_settings_choose_the_synced_streams() -> None:
    assert Settings(sync_streams="all").streams_synced() == list(RECORD_STREAMS)
    assert Settings(sync_streams="trackers, calls").streams_synced() == ["calls", "trackers"]
    assert Settings(sync_streams="none").streams_synced() == []


def test_a_window_states_both_inclusive_days_and_the_time_zone() -> None:
    w = remote.Window(date(2026, 1, 1), date(2026, 1, 7))
    assert w.params("America/New_York") == {
        "start_date": "2026-01-01",
        "end_date": "2026-01-07",
        "time_zone": "America/New_York",
    }
    assert remote.Window(date_range="recent").params("UTC") == {"date_range": "recent"}
    assert remote.Window.from_doc(w.as_doc()) == w


def test_the_backfill_starts_days_back_but_never_past_the_retention() -> None:
    today = date(2026, 12, 6)
    assert remote.backfill_start(today, 90) == today - timedelta(days=89)
    oldest = remote.backfill_start(today, 762)
    assert oldest == date(2024, 11, 7)  # the day after 25 months ago
    assert remote.rescan_window(today, 3) == remote.Window(date(2026, 12, 4), today)


def _check_tiling(windows: list[remote.Window], first: date, last: date) -> None:
    """Newest first, no overlap, no gap, from `last` back to `first`."""
    assert windows[0].last == last and windows[-1].first == first
    for newer, older in zip(windows, windows[1:], strict=False):
        assert older.last is not None and newer.first is not None
        assert older.last + timedelta(days=1) == newer.first
    for w in windows:
        assert w.first is not None and w.last is not None and w.first <= w.last


@pytest.mark.parametrize("days", [1, 7, 31, 100])
def test_plain_windows_tile_the_days_newest_first(days: int) -> None:
    first, last = date(2025, 1, 1), date(2026, 2, 3)
    windows = remote.plain_windows(first, last, days)
    _check_tiling(windows, first, last)
    assert all(w.days <= days for w in windows)


def test_sized_windows_hold_about_the_target_and_add_up_to_every_call() -> None:
    rng = random.Random(7)
    last = date(2026, 12, 6)
    first = remote.backfill_start(last, 762)
    counts = {
        first + timedelta(days=i): rng.randint(0, 600) for i in range((last - first).days + 1)
    }
    counts[last - timedelta(days=3)] = 5000  # a day above the target is a window of its own
    windows = remote.sized_windows(counts, first, last, 1000, 31)
    _check_tiling(windows, first, last)
    assert sum(w.expected or 0 for w in windows) == sum(counts.values())
    for w in windows:
        assert w.days <= 31
        assert (w.expected or 0) <= 1000 or w.days == 1
    big = [w for w in windows if w.first == last - timedelta(days=3)]
    assert big and big[0].days == 1 and big[0].expected == 5000


def test_the_request_count_is_pages_of_250_per_window_plus_the_day_counts() -> None:
    windows = [
        remote.Window(date(2026, 1, 2), date(2026, 1, 3), expected=0),
        remote.Window(date(2026, 1, 1), date(2026, 1, 1), expected=250),
        remote.Window(date(2025, 12, 1), date(2025, 12, 31), expected=251),
    ]
    assert remote.requests_for(windows) == 1 + 1 + 2
    assert remote.requests_for(windows, days=762) == 4 + math.ceil(762 / 200)


class TimeseriesAnswers:
    """A client whose timeseries requests each wait until all four of a 762-day plan have
    been sent: asked one after the other, the first waits alone and the barrier breaks."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(4, timeout=10)
        self.asked: list[tuple[str, str]] = []

    def request(self, method: str, path: str, *, params: dict[str, str]) -> dict[str, object]:
        self.asked.append((params["start_date"], params["end_date"]))
        self.barrier.wait()
        first, last = (
            date.fromisoformat(params["start_date"]),
            date.fromisoformat(params["end_date"]),
        )
        days = (last - first).days + 1
        return {
            "data": [
                {"date": (first + timedelta(d)).isoformat(), "total_calls": 2} for d in range(days)
            ]
        }


def test_the_day_counts_of_a_long_backfill_are_asked_for_at_once() -> None:
    client = TimeseriesAnswers()
    last = date(2026, 12, 6)
    first = last - timedelta(days=761)
    counts = remote.day_counts(client, "ACC1", STREAMS["calls"], first, last, "UTC")  # type: ignore[arg-type]
    assert len(client.asked) == math.ceil(762 / remote.TIMESERIES_POINTS)
    assert sorted(counts) == [first + timedelta(d) for d in range(762)]
    assert set(counts.values()) == {2}
