"""Every stream synced from the simulator's endpoints over HTTP (the work called directly):
calls by day-count windows then rescans that see edits, spam and new calls; trackers, tags
and users walked whole with their deletions; form submissions; conversations' new messages.
Pages of 25 (CALLRAIL_PAGE_SIZE): as many pages as with 250, a tenth of the records to store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from callrail_sync.callrail import streams as remote
from callrail_sync.callrail.client import CallRailClient, Timeouts
from callrail_sync.job import JobParams, JobType, NewJob
from callrail_sync.runtime import Runtime
from callrail_sync.stores.streams import RecordQuery, feed_id
from callrail_sync.streams import STREAMS
from simulator import SimData, SimServer
from simulator.control import SimControl
from tasks.jobs import Outcome
from tasks.streams import sync_stream_work

PAGE = 25
pytestmark = pytest.mark.pages_of(PAGE)


@pytest.fixture
def sim_data() -> SimData:
    return SimData(
        seed=9,
        keys=1,
        accounts_per_key=1,
        companies_per_account=6,
        calls_per_company=15,
        call_days=120,
    )


@pytest.fixture
def account(sim_data: SimData, api_key: str) -> str:
    return sim_data.accounts_by_key[api_key][0]


def run(
    runtime: Runtime, owner: str, account: str, stream: str, sim: SimServer, key: str
) -> Outcome:
    params = JobParams(callrail_account_id=account, stream=stream)
    job, _ = runtime.stores.jobs.create(
        NewJob(owner=owner, type=JobType.SYNC_STREAM, params=params)
    )
    client = CallRailClient(key, base_url=sim.base_url, timeouts=Timeouts(2, 10), page_size=PAGE)
    return sync_stream_work(job, runtime, client)


def live(runtime: Runtime, owner: str, account: str, stream: str) -> dict[str, dict[str, Any]]:
    feed = feed_id(owner, stream, account)
    found: dict[str, dict[str, Any]] = {}
    query = RecordQuery(feed, STREAMS[stream], limit=1000)
    while True:
        page = runtime.stores.streams.read(query)
        found.update({r["id"]: r for r in page.records})
        if not page.has_more:
            return found
        query = RecordQuery(**{**query.__dict__, "after": page.last})


def test_calls_backfill_by_day_counts_then_rescans_see_edits_spam_and_new_calls(
    runtime: Runtime, owner: str, sim: SimServer, account: str, api_key: str
) -> None:
    runtime.settings.backfill_days = 150
    runtime.settings.window_pages = 1
    runtime.settings.stream_fields = "note,gclid,not_a_field"  # a deployment's choice
    control = SimControl(sim.base_url)
    done = run(runtime, owner, account, "calls", sim, api_key)
    assert done.result["mode"] == "backfill"
    feed = feed_id(owner, "calls", account)
    state = runtime.stores.streams.state(feed)
    windows = [remote.Window.from_doc(w) for w in state.windows]
    assert sum(w.expected or 0 for w in windows) == 6 * 15  # the day counts, every call
    assert all(w["records"] == w["expected"] for w in state.windows)
    assert len(live(runtime, owner, account, "calls")) == 6 * 15
    # Exactly the fewest requests the windows allow, plus the day counts.
    sent = sim.requests_logged("GET", "/calls")
    days = (windows[0].last - windows[-1].first).days + 1  # type: ignore[operator]
    assert len(sent) == remote.requests_for(windows, days, PAGE)
    assert all("time_zone=UTC" in r.query for r in sent)
    listed = [r.query for r in sent if "/calls.json" in r.path]
    assert listed and all("note%2Cgclid" in q and "not_a_field" not in q for q in listed)
    # Windows of one page each (WINDOW_PAGES=1), pages of CALLRAIL_PAGE_SIZE.
    assert len(windows) > 1 and all((w.expected or 0) <= PAGE for w in windows)
    assert all(f"per_page={PAGE}" in q for q in listed)
    # Later: a new call, an edit of it, and a recent call marked spam.
    company = sim.data.companies(sim.data.account(account))[0]["id"]
    first = control.place_call(company)
    spam = control.place_call(company)
    again = run(runtime, owner, account, "calls", sim, api_key)
    assert again.result["mode"] == "rescan" and again.result["changes"]["added"] == 2
    control.edit_call(first["id"], note="called back", lead_status="good_lead")
    control.mark_spam(spam["id"])
    third = run(runtime, owner, account, "calls", sim, api_key)
    assert third.result["changes"]["updated"] == 1 and third.result["changes"]["deleted"] == 1
    calls = live(runtime, owner, account, "calls")
    assert calls[first["id"]]["note"] == "called back" and spam["id"] not in calls
    assert calls[first["id"]]["lead_status"] == "good_lead"
    # The roll-ups count what the records hold: the spam call is taken away.
    today = datetime.now(UTC).date()
    docs = runtime.stores.streams.rollups(feed, today - timedelta(days=200), today + timedelta(1))
    from callrail_sync.stores.streams import summarize

    total = summarize(docs, None)["total"]
    assert total["calls"] == len(calls) == 6 * 15 + 1
    assert total["leads"] == sum(c.get("lead_status") == "good_lead" for c in calls.values())


def test_trackers_tags_and_users_are_walked_whole_with_their_deletions(
    runtime: Runtime, owner: str, sim: SimServer, account: str, api_key: str
) -> None:
    control = SimControl(sim.base_url)
    kept = {}
    for stream in ("trackers", "tags", "users"):
        done = run(runtime, owner, account, stream, sim, api_key)
        assert done.result["mode"] == "walk"
        kept[stream] = live(runtime, owner, account, stream)
        assert kept[stream] and done.result["records"] == len(kept[stream])
    tracker = next(t for t in kept["trackers"].values() if t.get("status") == "active")
    control.disable_tracker(tracker["id"])
    tag = next(iter(kept["tags"].values()))
    control.delete_tag(tag["id"])
    user = next(iter(kept["users"].values()))
    control.delete_user(user["id"])
    changes = {s: run(runtime, owner, account, s, sim, api_key).result["changes"] for s in kept}
    assert changes["trackers"]["updated"] == 1 and changes["trackers"]["deleted"] == 0
    assert live(runtime, owner, account, "trackers")[tracker["id"]]["status"] == "disabled"
    assert changes["tags"]["deleted"] == 1 and changes["users"]["deleted"] == 1
    assert tag["id"] not in live(runtime, owner, account, "tags")
    assert user["id"] not in live(runtime, owner, account, "users")


def test_forms_by_windows_and_conversations_new_messages(
    runtime: Runtime, owner: str, sim: SimServer, account: str, api_key: str
) -> None:
    runtime.settings.backfill_days = 150
    control = SimControl(sim.base_url)
    forms = run(runtime, owner, account, "form_submissions", sim, api_key)
    assert forms.result["mode"] == "backfill"
    stored = live(runtime, owner, account, "form_submissions")
    assert len(stored) == 6 * (15 // 5)
    for request in sim.requests_logged("GET", "/form_submissions.json"):
        assert "start_date=" in request.query and "end_date=" in request.query
    company = sim.data.companies(sim.data.account(account))[0]["id"]
    form = control.add_form(company)
    rescan = run(runtime, owner, account, "form_submissions", sim, api_key)
    assert rescan.result["changes"]["added"] == 1
    assert form["id"] in live(runtime, owner, account, "form_submissions")

    texts = run(runtime, owner, account, "conversations", sim, api_key)
    assert texts.result["mode"] == "backfill"
    before = live(runtime, owner, account, "conversations")
    assert before
    ranges = {r.query for r in sim.requests_logged("GET", "/text-messages.json")}
    assert all("date_range=" in q for q in ranges)
    talker = next(iter(before.values()))
    control.add_text(
        company_id=talker["company_id"],
        customer_phone_number=talker["customer_phone_number"],
        content="Still open?",
    )
    recent = run(runtime, owner, account, "conversations", sim, api_key)
    assert recent.result["mode"] == "rescan" and recent.result["changes"]["updated"] >= 1
    after = live(runtime, owner, account, "conversations")[talker["id"]]
    assert after["last_message_at"] > talker["last_message_at"]
