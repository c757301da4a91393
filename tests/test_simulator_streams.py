"""The simulator's stream endpoints as CALLRAIL_STREAMS.md describes them, traps included:
calls.json (dates, time zones, fields, relative pages, spam), the call summary and timeseries.
One simulator for the module; each test uses an account of its own when it changes data."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from simulator import SimData, SimServer
from simulator.call_listing import DEFAULT_KEYS
from simulator.control import SimControl
from simulator.streams import FORM_DEFAULT

DAYS = 120


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    data = SimData(
        seed=21, keys=1, accounts_per_key=1, companies_per_account=8, calls_per_company=40,
        call_days=DAYS,
    )  # fmt: skip
    server = SimServer(data).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def key(sim: SimServer) -> str:
    return sim.data.api_keys[0]


@pytest.fixture(scope="module")
def account(sim: SimServer, key: str) -> str:
    return sim.data.accounts_by_key[key][0]


def fresh_account(sim: SimServer, key: str) -> str:
    return SimControl(sim.base_url).add_account(key, 4, calls_per_company=30, call_days=20)


def get(sim: SimServer, key: str, path: str, **params: Any) -> requests.Response:
    headers = {"Authorization": f'Token token="{key}"'}
    return requests.get(sim.base_url + path, params=params, headers=headers, timeout=30)


def walk(sim: SimServer, key: str, account: str, **params: Any) -> list[dict[str, Any]]:
    """Every call of a listing, by offset pages of 250."""
    found: list[dict[str, Any]] = []
    page = 1
    while True:
        body = get(sim, key, f"/a/{account}/calls.json", per_page=250, page=page, **params)
        assert body.status_code == 200, body.text
        found += body.json()["calls"]
        if page >= body.json()["total_pages"]:
            return found
        page += 1


def today(zone: str = "UTC") -> date:
    return datetime.now(ZoneInfo(zone)).date()


def test_without_dates_calls_json_answers_the_recent_7_days_only(sim, key, account):
    recent = walk(sim, key, account, time_zone="UTC")
    assert recent, "the history has calls in the last 7 days"
    oldest = datetime.combine(today() - timedelta(days=6), datetime.min.time(), UTC)
    assert all(datetime.fromisoformat(c["start_time"]) >= oldest for c in recent)
    month = walk(sim, key, account, time_zone="UTC", start_date=today() - timedelta(days=29))
    assert len(month) > len(recent)


def test_bounds_are_inclusive_days_so_adjacent_windows_neither_overlap_nor_leave_a_gap(
    sim, key, account
):
    first, last = today() - timedelta(days=59), today()
    whole = {c["id"] for c in walk(sim, key, account, start_date=first, end_date=last,
                                   time_zone="UTC")}  # fmt: skip
    parts: list[set[str]] = []
    end = last
    while end >= first:
        start = max(first, end - timedelta(days=6))
        ids = {c["id"] for c in walk(sim, key, account, start_date=start, end_date=end,
                                     time_zone="UTC")}  # fmt: skip
        parts.append(ids)
        end = start - timedelta(days=1)
    assert sum(len(p) for p in parts) == len(whole) == len(set().union(*parts)) > 100
    one_day = walk(sim, key, account, start_date=first, end_date=first, time_zone="UTC")
    assert all(c["start_time"].startswith(first.isoformat()) for c in one_day)


def test_dates_are_read_and_start_times_written_in_the_time_zone_asked_for(sim, key, account):
    # The busiest day of a month (a day of ~3 calls on average may have none: CI hit one).
    month = walk(sim, key, account, start_date=today() - timedelta(days=40),
                 end_date=today() - timedelta(days=10), time_zone="UTC")  # fmt: skip
    days = Counter(datetime.fromisoformat(c["start_time"]).date() for c in month)
    day = days.most_common(1)[0][0]
    utc = walk(sim, key, account, start_date=day, end_date=day, time_zone="UTC")
    assert len(utc) == days[day] > 0
    la = walk(sim, key, account, start_date=day, end_date=day, time_zone="America/Los_Angeles")
    assert {c["start_time"][-6:] for c in utc} == {"+00:00"}
    assert {c["start_time"][-6:] for c in la} <= {"-08:00", "-07:00"}
    for call in utc + la:  # each in the day asked for, in the zone asked for
        assert datetime.fromisoformat(call["start_time"]).date() == day
    # Without time_zone: the account's zone, which no endpoint shows.
    zone = sim.data.accounts[account].time_zone
    assert "time_zone" not in get(sim, key, f"/a/{account}.json").json()
    default = walk(sim, key, account, start_date=day, end_date=day - timedelta(days=-3))
    stated = walk(sim, key, account, start_date=day, end_date=day - timedelta(days=-3),
                  time_zone=zone)  # fmt: skip
    assert default == stated
    bad = get(sim, key, f"/a/{account}/calls.json", time_zone="Mars/Olympus")
    assert bad.status_code == 400 and bad.json()["error"]


def test_optional_fields_come_only_when_asked_and_unknown_ones_are_refused(sim, key, account):
    path = f"/a/{account}/calls.json"
    plain = get(sim, key, path, start_date=today() - timedelta(days=30)).json()["calls"][0]
    assert set(plain) == set(DEFAULT_KEYS)
    assert plain["id"].startswith("CAL") and len(plain["id"]) == 35
    assert isinstance(plain["recording_duration"], str | None)
    asked = "source,campaign,milestones,company_id,tags,lead_status,utm_source,created_at"
    rich = get(sim, key, path, start_date=today() - timedelta(days=30), fields=asked).json()
    call = rich["calls"][0]
    assert set(call) == set(DEFAULT_KEYS) | set(asked.split(","))
    assert set(call["milestones"]) == {"first_touch", "lead_created", "qualified", "last_touch"}
    assert call["milestones"]["lead_created"]["event_date"].startswith(call["start_time"][:4])
    assert call["company_id"].startswith("COM")
    refused = get(sim, key, path, fields="source,not_a_field")
    assert refused.status_code == 400 and "not_a_field" in refused.json()["error"]
    # A sort on an optional field needs it in fields (CALLRAIL_STREAMS.md: starred fields).
    assert get(sim, key, path, sort="source").status_code == 400
    by_source = get(sim, key, path, sort="source", fields="source").json()["calls"]
    names = [c["source"] for c in by_source]
    assert names == sorted(names)


def test_relative_pages_follow_next_page_and_a_spam_call_mid_walk_is_skipped(sim, key):
    account = fresh_account(sim, key)
    params = {"start_date": today() - timedelta(days=25), "time_zone": "UTC", "per_page": 50}
    everything = [c["id"] for c in walk(sim, key, account, start_date=params["start_date"])]
    assert len(everything) == 120
    headers = {"Authorization": f'Token token="{key}"'}
    url: str | None = f"{sim.base_url}/a/{account}/calls.json"
    seen: list[str] = []
    first = True
    while url:
        answer = requests.get(
            url, params={**params, "relative_pagination": "true"} if first else None,
            headers=headers, timeout=30,
        )  # fmt: skip
        page = answer.json()
        seen += [c["id"] for c in page["calls"]]
        if first:  # a call already seen is marked spam: the rest of the list moves up one
            SimControl(sim.base_url).mark_spam(seen[0])
        first, url = False, page["next_page"]
    assert len(seen) == 119 and everything[50] not in seen  # skipped, never seen
    after = walk(sim, key, account, start_date=params["start_date"])
    assert everything[0] not in {c["id"] for c in after}  # spam is gone for good


def test_an_edited_call_shows_its_edits_and_placed_calls_join_the_history(sim, key):
    account = fresh_account(sim, key)
    control = SimControl(sim.base_url)
    path = f"/a/{account}/calls.json"
    call = get(sim, key, path, time_zone="UTC").json()["calls"][0]
    control.edit_call(call["id"], tags=["Booked"], note="called back", lead_status="good_lead")
    edited = get(sim, key, path, time_zone="UTC", fields="tags,note,lead_status").json()
    found = next(c for c in edited["calls"] if c["id"] == call["id"])
    assert [t["name"] for t in found["tags"]] == ["Booked"] and found["note"] == "called back"
    assert found["lead_status"] == "good_lead"
    with pytest.raises(Exception, match="404"):
        control.edit_call("CALnope", note="x")
    company = sim.data.companies(sim.data.accounts[account])[0]["id"]
    placed = control.place_call(company, customer_name="New Caller")
    newest = get(sim, key, path, time_zone="UTC").json()["calls"][0]
    assert newest["id"] == placed["id"] and newest["customer_name"] == "New Caller"


def test_retention_is_25_months_and_all_time_reaches_beyond_it(sim, key, account):
    path = f"/a/{account}/calls.json"
    old = today() - timedelta(days=26 * 31)
    assert get(sim, key, path, start_date=old).status_code == 400
    assert get(sim, key, path, date_range="all_time").status_code == 400
    assert get(sim, key, path, date_range="last_month").status_code == 200
    assert get(sim, key, path, date_range="someday").status_code == 400


def test_summary_totals_and_groups_agree_with_the_listing(sim, key, account):
    since = today() - timedelta(days=30)
    listed = walk(sim, key, account, start_date=since, time_zone="UTC", fields="source")
    path = f"/a/{account}/calls/summary.json"
    fields = "total_calls,answered_calls,missed_calls,leads,average_duration"
    body = get(sim, key, path, start_date=since, time_zone="UTC", fields=fields,
               group_by="source").json()  # fmt: skip
    assert body["total_results"]["total_calls"] == len(listed)
    assert body["total_results"]["answered_calls"] == sum(c["answered"] for c in listed)
    assert body["time_zone"] == "UTC" and body["grouped_by"] == "source"
    groups = {g["key"]: g["total_calls"] for g in body["grouped_results"]}
    assert sum(groups.values()) == len(listed)
    assert groups == {s: sum(c["source"] == s for c in listed) for s in groups}
    company = sim.data.companies(sim.data.accounts[account])[0]["id"]
    assert get(sim, key, path, company_id=company, group_by="company").status_code == 400


def test_timeseries_counts_each_day_zeros_included_and_caps_at_200_points(sim, key, account):
    path = f"/a/{account}/calls/timeseries.json"
    first = today() - timedelta(days=199)
    body = get(sim, key, path, start_date=first, end_date=today(), time_zone="UTC").json()
    assert len(body["data"]) == 200 and body["data"][0]["date"] == first.isoformat()
    assert any(p["total_calls"] == 0 for p in body["data"])  # before the history began
    listed = walk(sim, key, account, start_date=first, end_date=today(), time_zone="UTC")
    assert sum(p["total_calls"] for p in body["data"]) == len(listed)
    assert body["total_results"]["total_calls"] == len(listed)
    too_long = get(sim, key, path, start_date=first - timedelta(days=1), end_date=today())
    assert too_long.status_code == 400 and "200" in too_long.json()["error"]
    weeks = get(sim, key, path, start_date=first, interval="week", time_zone="UTC").json()
    assert sum(p["total_calls"] for p in weeks["data"]) == len(listed)


def test_serve_s_demo_accounts_have_90_days_and_thousands_of_calls():
    data = SimData(
        seed=1, keys=1, accounts_per_key=3, companies_per_account=180, calls_per_company=20,
        call_days=120,
    )  # fmt: skip
    for account in data.accounts.values():
        history = data.history(account)
        span = (history.starts[-1] - history.starts[0]) / 86_400
        assert len(history) >= 3_000 and span >= 90


# --- form submissions and text conversations -----------------------------------------------


def test_form_submissions_have_their_keys_dates_and_optional_fields(sim, key, account):
    path = f"/a/{account}/form_submissions.json"
    since = today() - timedelta(days=59)
    body = get(sim, key, path, start_date=since, time_zone="UTC", per_page=250).json()
    forms = body["form_submissions"]
    assert body["total_records"] == len(forms) > 20
    form = forms[0]
    assert set(form) == set(FORM_DEFAULT)
    assert form["id"].startswith("FOR") and len(form["id"]) == 35
    assert form["submitted_at"].endswith("Z")  # UTC, e.g. 2017-11-17T07:46:28.000Z
    stamps = [f["submitted_at"] for f in forms]
    assert stamps == sorted(stamps, reverse=True)
    rich = get(sim, key, path, start_date=since, fields="form_name,lead_status,milestones").json()
    assert {"form_name", "lead_status", "milestones"} <= set(rich["form_submissions"][0])
    assert get(sim, key, path, fields="gclid").status_code == 400  # not documented for forms
    recent = get(sim, key, path, time_zone="UTC", per_page=250).json()["form_submissions"]
    week = datetime.combine(today() - timedelta(days=6), datetime.min.time(), UTC)
    assert all(datetime.fromisoformat(f["submitted_at"]) >= week for f in recent)
    company = form["company_id"]
    mine = get(sim, key, path, start_date=since, company_id=company, per_page=250).json()
    assert {f["company_id"] for f in mine["form_submissions"]} == {company}
    assert get(sim, key, path, start_date=today() - timedelta(days=26 * 31)).status_code == 400


def test_a_form_submitted_now_is_listed_first(sim, key):
    account = fresh_account(sim, key)
    company = sim.data.companies(sim.data.accounts[account])[1]["id"]
    made = SimControl(sim.base_url).add_form(company, customer_name="Fresh Lead")
    listed = get(sim, key, f"/a/{account}/form_submissions.json").json()["form_submissions"]
    assert listed[0]["id"] == made["id"] and listed[0]["customer_name"] == "Fresh Lead"


def test_conversations_filter_by_date_range_only_and_move_when_a_text_arrives(sim, key):
    account = fresh_account(sim, key)
    path = f"/a/{account}/text-messages.json"
    recent = get(sim, key, path, per_page=250).json()
    ignored = get(sim, key, path, per_page=250, start_date=today() - timedelta(days=19)).json()
    assert ignored == recent  # start_date is not a parameter here: the recent default holds
    month = get(sim, key, path, per_page=250, date_range="last_30_days").json()
    assert month["total_records"] > recent["total_records"]
    conversation = month["conversations"][-1]  # the oldest
    assert len(conversation["id"]) == 5 and conversation["last_message_at"].endswith("Z")
    assert 1 <= len(conversation["recent_messages"]) <= 2
    assert "lead_status" not in conversation
    control = SimControl(sim.base_url)
    moved = control.add_text(
        conversation["company_id"], conversation["customer_phone_number"], content="Still open?"
    )
    assert moved["id"] == conversation["id"]
    assert moved["last_message_at"] > conversation["last_message_at"]
    first = get(sim, key, path).json()["conversations"][0]
    assert first["id"] == conversation["id"]
    assert first["recent_messages"][0]["content"] == "Still open?"
    with_fields = get(sim, key, path, fields="lead_status,source").json()["conversations"][0]
    assert {"lead_status", "source"} <= set(with_fields)


# --- trackers, tags and users ------------------------------------------------------------------


def test_trackers_list_disabled_ones_unless_asked_for_active_and_calls_name_them(sim, key, account):
    path = f"/a/{account}/trackers.json"
    everything = get(sim, key, path, per_page=250).json()["trackers"]
    keys = {"id", "name", "type", "status", "destination_number", "tracking_numbers",
            "whisper_message", "sms_enabled", "sms_supported", "company", "call_flow",
            "source", "created_at", "disabled_at"}  # fmt: skip
    assert set(everything[0]) == keys
    disabled = [t for t in everything if t["status"] == "disabled"]
    assert disabled and all(t["disabled_at"] > "" for t in disabled)
    for tracker in disabled:
        assert datetime.fromisoformat(tracker["created_at"]) < datetime.fromisoformat(
            tracker["disabled_at"]
        )
    active = get(sim, key, path, per_page=250, status="active").json()["trackers"]
    assert len(active) == len(everything) - len(disabled)
    assert {t["type"] for t in everything} == {"source", "session"}
    assert "campaign_name" in get(sim, key, path, fields="campaign_name").json()["trackers"][0]
    since = today() - timedelta(days=30)
    call = get(sim, key, f"/a/{account}/calls.json", start_date=since, fields="tracker_id")
    assert call.json()["calls"][0]["tracker_id"] in {t["id"] for t in everything}
    names = [t["name"].lower() for t in get(sim, key, path, sort="name").json()["trackers"]]
    assert names == sorted(names)


def test_a_deleted_tracker_stays_listed_disabled_and_deleted_tags_and_users_vanish(sim, key):
    account = fresh_account(sim, key)
    control = SimControl(sim.base_url)
    trackers = get(sim, key, f"/a/{account}/trackers.json", status="active").json()["trackers"]
    gone = control.disable_tracker(trackers[0]["id"])
    assert gone["status"] == "disabled" and gone["disabled_at"]
    listed = get(sim, key, f"/a/{account}/trackers.json").json()["trackers"]
    assert {t["id"]: t["status"] for t in listed}[gone["id"]] == "disabled"
    tags = get(sim, key, f"/a/{account}/tags.json").json()["tags"]
    assert all(isinstance(t["id"], int) for t in tags)
    control.delete_tag(tags[0]["id"])
    assert tags[0]["id"] not in {
        t["id"] for t in get(sim, key, f"/a/{account}/tags.json").json()["tags"]
    }
    users = get(sim, key, f"/a/{account}/users.json").json()["users"]
    control.delete_user(users[-1]["id"])
    left = get(sim, key, f"/a/{account}/users.json").json()["users"]
    assert [u["id"] for u in left] == [u["id"] for u in users[:-1]]


def test_tags_by_level_and_status(sim, key, account):
    path = f"/a/{account}/tags.json"
    tags = get(sim, key, path, per_page=250).json()["tags"]
    assert set(tags[0]) == {"id", "name", "tag_level", "color", "background_color",
                            "company_id", "status", "created_at"}  # fmt: skip
    levels = {t["tag_level"] for t in tags}
    assert levels == {"account", "company"}
    account_level = get(sim, key, path, tag_level="account").json()["tags"]
    assert account_level and all(t["company_id"] is None for t in account_level)
    company = next(t["company_id"] for t in tags if t["company_id"])
    assert get(sim, key, path, tag_level="account", company_id=company).status_code == 400
    mine = get(sim, key, path, company_id=company).json()["tags"]
    assert {t["company_id"] for t in mine} <= {company, None}
    enabled = get(sim, key, path, status="enabled", per_page=250).json()["tags"]
    assert all(t["status"] == "enabled" for t in enabled)


def test_users_have_their_keys_and_companies_and_search_and_sort(sim, key, account):
    path = f"/a/{account}/users.json"
    users = get(sim, key, path).json()["users"]
    assert set(users[0]) == {"email", "id", "created_at", "role", "first_name", "last_name",
                             "name", "accepted", "companies"}  # fmt: skip
    assert all(u["id"].startswith("USR") and u["role"] in ("admin", "manager", "reporting")
               for u in users)  # fmt: skip
    found = get(sim, key, path, search=users[0]["last_name"].upper()).json()["users"]
    assert users[0]["id"] in {u["id"] for u in found}
    emails = [u["email"] for u in get(sim, key, path, sort="email").json()["users"]]
    assert emails == sorted(emails)
    company = users[0]["companies"][0]["id"]
    with_company = get(sim, key, path, company_id=company).json()["users"]
    assert all(company in {c["id"] for c in u["companies"]} for u in with_company)
