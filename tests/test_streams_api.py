"""The records and summary routes over a real shim, reading what the store holds; /changes,
POST /sync and /status for the streams."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import requests

from api_shim.answers import PREFIX as P
from callrail_sync.stores import Stores
from callrail_sync.stores.streams import feed_id
from callrail_sync.streams import STREAMS
from tests.test_streams_store import ACCOUNT, make_calls


def get(shim_url: str, token: str, path: str, **params: object) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return requests.get(shim_url + P + path, params=params, headers=headers, timeout=30)


def store_calls(stores: Stores, owner: str, n: int = 240) -> list[dict]:
    calls = make_calls(n, days=40)
    # Some calls in the last days, so the default summary (the last 30 days) counts them.
    now = datetime.now(UTC)
    for i, call in enumerate(calls[:30]):
        zone = ZoneInfo(call["company_time_zone"])
        call["start_time"] = (now - timedelta(hours=3 * i + 1)).astimezone(zone).isoformat()
    feed = feed_id(owner, "calls", ACCOUNT)
    for start in range(0, n, 100):
        stores.streams.write_page(
            STREAMS["calls"], feed, owner, ACCOUNT, calls[start : start + 100]
        )
    return calls


def test_bad_requests_get_a_400_or_404_with_a_clear_message(shim_url, token, owner) -> None:
    cases = [
        ("/records/calls", {}, 400, "account_id is required for this stream."),
        ("/records/calendars", {"account_id": ACCOUNT}, 404, "Unknown stream: calendars."),
        ("/records/calls", {"account_id": ACCOUNT, "since": "2026-01-01"}, 400, "since must be"),
        ("/records/calls", {"account_id": ACCOUNT, "until": "soon"}, 400, "until must be"),
        ("/records/calls", {"account_id": ACCOUNT, "limit": "0"}, 400, "limit must be"),
        ("/records/calls", {"account_id": ACCOUNT, "limit": "1001"}, 400, "limit must be"),
        ("/records/calls", {"account_id": ACCOUNT, "sort": "-name"}, 400, "sort must be one of"),
        ("/records/users", {"account_id": ACCOUNT, "direction": "inbound"}, 400, "direction filt"),
        ("/records/calls", {"account_id": ACCOUNT, "answer_status": "x"}, 400, "answer_status"),
        ("/records/calls", {"account_id": ACCOUNT, "first_call": "yes"}, 400, "first_call must"),
        ("/records/calls", {"account_id": ACCOUNT, "cursor": "abc"}, 400, "cursor is not valid"),
        (
            "/records/calls",
            {"account_id": ACCOUNT, "since": "2026-02-01T00:00Z", "until": "2026-01-01T00:00Z"},
            400,
            "until must be after since.",
        ),
        ("/records/calls/summary", {}, 400, "account_id is required."),
        ("/records/calls/summary", {"account_id": ACCOUNT, "group_by": "x"}, 400, "group_by"),
    ]
    for path, params, status, message in cases:
        answer = get(shim_url, token, path, **params)
        assert answer.status_code == status, (path, params, answer.text)
        body = answer.json()
        assert body["success"] is False and body["errno"] == status
        assert body["message"].startswith(message), (params, body)


def test_the_records_queries_are_typed_models_and_an_unknown_stream_is_404_first(
    shim_url, token, owner
) -> None:
    """The query models check the records routes' queries (so /openapi.json shows each
    value's type, not an untyped parameter); the stream is checked before the query."""
    spec = requests.get(f"{shim_url}/openapi.json", timeout=10).json()
    for path, name, wanted in [
        (f"{P}/records/{{stream}}", "limit", "integer"),
        (f"{P}/records/{{stream}}", "first_call", "boolean"),
        (f"{P}/records/calls/summary", "since", "string"),
    ]:
        (param,) = [p for p in spec["paths"][path]["get"]["parameters"] if p["name"] == name]
        types = [s.get("type") for s in param["schema"].get("anyOf", [param["schema"]])]
        assert wanted in types, (path, name, param)
    answer = get(shim_url, token, "/records/calendars", limit="0")
    assert answer.status_code == 404, answer.text


def test_calls_page_by_cursor_newest_first_with_filters(shim_url, token, owner, stores) -> None:
    calls = store_calls(stores, owner)
    since = datetime(2026, 10, 25, tzinfo=UTC)
    wanted = [
        c for c in calls if datetime.fromisoformat(c["start_time"]) >= since and c["answered"]
    ]
    seen: list[dict] = []
    params = {"account_id": ACCOUNT, "since": since.isoformat(), "answer_status": "answered"}
    cursor = None
    while True:
        answer = get(shim_url, token, "/records/calls", limit=25, cursor=cursor, **params)
        assert answer.status_code == 200, answer.text
        data = answer.json()["data"]
        seen += data["records"]
        if not data["has_more"]:
            assert data["next_cursor"] is None
            break
        cursor = data["next_cursor"]
    assert sorted(c["id"] for c in seen) == sorted(c["id"] for c in wanted)
    times = [datetime.fromisoformat(c["start_time"]) for c in seen]
    assert times == sorted(times, reverse=True)
    assert all(c["tracking"]["sources"] == ["history"] for c in seen)
    # A cursor of one query is refused by another.
    other = get(shim_url, token, "/records/calls", account_id=ACCOUNT, cursor=cursor or "x")
    assert other.status_code == 400


def test_the_summary_counts_from_roll_ups(shim_url, token, owner, stores) -> None:
    calls = store_calls(stores, owner)
    answer = get(shim_url, token, "/records/calls/summary", account_id=ACCOUNT, group_by="source")
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    today = datetime.now(UTC).date()
    first = today - timedelta(days=29)

    def day_of(c: dict) -> object:
        return (
            datetime.fromisoformat(c["start_time"])
            .astimezone(ZoneInfo(c["company_time_zone"]))
            .date()
        )

    counted = [c for c in calls if first <= day_of(c) <= today]
    assert data["total"]["calls"] == len(counted)
    assert data["total"]["answered"] == sum(c["answered"] for c in counted)
    by_source = Counter(c["source"] for c in counted)
    assert {g["key"]: g["calls"] for g in data["groups"]} == dict(by_source)
    ranged = get(
        shim_url,
        token,
        "/records/calls/summary",
        account_id=ACCOUNT,
        since="2026-10-01T00:00:00+00:00",
        until="2026-12-01T00:00:00+00:00",
        group_by="day",
        company_id="COM1",
    ).json()["data"]
    in_range = [
        c
        for c in calls
        if c["company_id"] == "COM1" and "2026-10-01" <= day_of(c).isoformat() <= "2026-11-30"
    ]
    assert ranged["total"]["calls"] == len(in_range)
    assert [g["key"] for g in ranged["groups"]] == sorted(g["key"] for g in ranged["groups"])


def test_changes_sync_and_status_know_the_streams(shim_url, token, owner, stores, runtime) -> None:
    runtime.settings.sync_streams = "all"
    store_calls(stores, owner, 120)
    first = get(shim_url, token, "/changes", kind="calls", account_id=ACCOUNT, limit=100).json()
    assert first["success"], first
    assert len(first["data"]["changes"]) == 100 and first["data"]["has_more"]
    rest = get(
        shim_url,
        token,
        "/changes",
        kind="calls",
        account_id=ACCOUNT,
        cursor=first["data"]["next_cursor"],
    ).json()["data"]
    assert len(rest["changes"]) == 20 and not rest["has_more"]
    headers = {"Authorization": f"Bearer {token}"}
    answer = requests.post(
        shim_url + P + "/sync",
        json={"account_id": ACCOUNT, "kind": "trackers"},
        headers=headers,
        timeout=30,
    )
    assert answer.status_code == 202, answer.text
    job = stores.jobs.get(answer.json()["data"]["job_id"])
    assert job is not None and job.type.value == "sync_stream"
    assert job.params.stream == "trackers" and job.params.callrail_account_id == ACCOUNT
    status = get(shim_url, token, "/status").json()["data"]["listings"]
    kinds = {(e["kind"], e["account_id"]) for e in status}
    for name in ("calls", "form_submissions", "conversations", "trackers", "tags", "users"):
        assert (name, ACCOUNT) in kinds
    trackers = next(e for e in status if e["kind"] == "trackers")
    assert trackers["state"] == "syncing" and trackers["job"]["id"] == job.id
    calls = next(e for e in status if e["kind"] == "calls")
    assert calls["counts"]["records"] == 120


def test_the_command_line_reads_records_changes_and_status_of_streams(
    runtime, queue, owner, stores, capsys
) -> None:
    from callrail_sync.cli.main import main
    from callrail_sync.cli.ops import Context

    calls = store_calls(stores, owner, 30)
    ctx = Context(runtime.settings, given_stores=stores, given_queue=queue)
    base = ["--account", owner, "--callrail-account", ACCOUNT]
    assert main(["records", "calls", *base, "--limit", "5", "--json"], ctx) == 0
    page = json.loads(capsys.readouterr().out)
    newest = sorted(calls, key=lambda c: datetime.fromisoformat(c["start_time"]))[-5:]
    assert [r["id"] for r in page["records"]] == [c["id"] for c in reversed(newest)]
    assert page["has_more"] and page["next_cursor"]
    assert main(["records", "calls", *base, "--since", "yesterday"], ctx) == 2
    assert "since must be an ISO 8601 time with an offset." in capsys.readouterr().out
    assert main(["changes", "--kind", "calls", *base, "--limit", "100"], ctx) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 31  # 30 changes, the cursor
    runtime.settings.sync_streams = "calls"
    stores.userconfig.set(owner, [ACCOUNT])
    assert main(["status", "--account", owner], ctx) == 0
    out = capsys.readouterr().out
    assert f"calls of {ACCOUNT}" in out
