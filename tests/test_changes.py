"""Change tracking and the change feed, driven through real syncs of a simulator whose data
changes while it runs: added, updated, disabled, deleted and reappearing companies."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
import requests
from pymongo.errors import BulkWriteError

from api_shim.answers import PREFIX as P
from callrail_sync.feed import encode_cursor
from callrail_sync.stores.changes import FeedQuery
from simulator.control import SimControl
from tests.conftest import OWNER, wait_job


@pytest.fixture
def control(sim) -> SimControl:
    return SimControl(sim.base_url)


@pytest.fixture
def account(sim_data, api_key) -> str:
    return sim_data.accounts_by_key[api_key][0]


def get(shim_url: str, token: str, path: str, **params) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return requests.get(shim_url + path, params=params, headers=headers, timeout=30)


def sync(submit_job, stores, owner: str, account: str):
    job, _ = submit_job(owner, "sync_companies", callrail_account_id=account)
    return wait_job(stores, job.id)


def read_all(shim_url: str, token: str, cursor: str | None = None, **params) -> tuple[list, str]:
    """Every change after `cursor`, page by page; the changes and the last next_cursor."""
    changes: list = []
    while True:
        query = {"kind": "companies", "limit": 7, **params}
        if cursor:
            query["cursor"] = cursor
        answer = get(shim_url, token, f"{P}/changes", **query)
        assert answer.status_code == 200, answer.text
        data = answer.json()["data"]
        changes += data["changes"]
        cursor = data["next_cursor"]
        if not data["has_more"]:
            return changes, cursor


def test_changes_follow_what_callrail_did_between_syncs(
    shim_url, token, worker, owner, stores, submit_job, control, account
):
    first = sync(submit_job, stores, owner, account)
    assert first.status.value == "succeeded"
    total = first.result["counts"]["records"]
    assert first.result["changes"] == {"added": total, "updated": 0, "deleted": 0, "total": total}
    seen, cursor = read_all(shim_url, token, account_id=account)
    assert len(seen) == total and {c["action"] for c in seen} == {"added"}
    assert all(c["first_seen_at"] == c["last_modified_at"] for c in seen)
    ids = sorted(c["id"] for c in seen)

    # Nothing changed in CallRail: nothing in the feed, and last_modified_at does not move.
    again = sync(submit_job, stores, owner, account)
    assert again.result["changes"] == {"added": 0, "updated": 0, "deleted": 0, "total": total}
    assert read_all(shim_url, token, cursor, account_id=account)[0] == []

    new = control.add_company(account, name="Zeta Dental")
    control.change_company(ids[0], name="Renamed Co")
    control.change_company(ids[1], status="disabled")
    control.remove_company(ids[2])
    third = sync(submit_job, stores, owner, account)
    assert third.result["changes"] == {"added": 1, "updated": 2, "deleted": 1, "total": total}
    changed, cursor = read_all(shim_url, token, cursor, account_id=account)
    by_id = {c["id"]: c for c in changed}
    assert len(changed) == len(by_id) == 4
    assert by_id[new["id"]]["action"] == "added"
    assert by_id[ids[0]]["action"] == "updated"
    assert by_id[ids[0]]["record"]["name"] == "Renamed Co"
    assert by_id[ids[0]]["last_modified_at"] > by_id[ids[0]]["first_seen_at"]
    # Disabled in CallRail is CallRail's own status: an update, not a deletion.
    assert by_id[ids[1]]["action"] == "updated"
    assert by_id[ids[1]]["record"]["status"] == "disabled"
    assert by_id[ids[1]]["deleted_at"] is None
    gone = by_id[ids[2]]
    assert gone["action"] == "deleted" and gone["deleted_at"] == gone["changed_at"]
    assert gone["record"]["id"] == ids[2]  # the last payload CallRail sent is kept

    # It comes back: `added` again, first seen when it was first seen.
    control.add_company(account, id=ids[2], name="Back Again")
    fourth = sync(submit_job, stores, owner, account)
    assert fourth.result["changes"]["added"] == 1
    back = read_all(shim_url, token, cursor, account_id=account)[0]
    assert [(c["id"], c["action"], c["deleted_at"]) for c in back] == [(ids[2], "added", None)]
    assert back[0]["first_seen_at"] == gone["first_seen_at"]

    # Filters: by action, and by time (a deletion counts at its deleted_at).
    deleted = read_all(shim_url, token, account_id=account, filter="deleted")[0]
    assert deleted == []  # the deleted one came back
    since = datetime.fromisoformat(gone["changed_at"]) - timedelta(milliseconds=1)
    recent = read_all(shim_url, token, account_id=account, modified_after=since.isoformat())[0]
    assert {c["id"] for c in recent} == {new["id"], ids[0], ids[1], ids[2]}


@pytest.mark.pages_of(25)
def test_a_failed_or_partial_walk_deletes_nothing(
    worker, owner, stores, submit_job, control, sim, api_key
):
    account = control.add_account(api_key, companies=60)  # three pages of 25
    assert sync(submit_job, stores, owner, account).status.value == "succeeded"
    victim = stores.changes.read(
        FeedQuery(owner=owner, kind="companies", callrail_account_id=account, limit=1)
    ).changes[0]
    control.remove_company(victim.id)
    # Page 1 comes, pages 2 and 3 fail in every attempt (max_attempts=3): the job fails.
    sim.set_knobs(fail_next=["ok"] + ["500"] * 6)
    failed = sync(submit_job, stores, owner, account)
    assert failed.status.value == "failed"
    counts = stores.changes.counts(owner, "companies", account)
    assert counts == {"added": 60, "updated": 0, "deleted": 0}
    sim.set_knobs(fail_next=[])
    done = sync(submit_job, stores, owner, account)
    assert done.result["changes"] == {"added": 0, "updated": 0, "deleted": 1, "total": 59}


def test_the_cursor_skips_and_repeats_nothing_while_syncs_run(
    shim_url, token, worker, owner, stores, submit_job, control, account
):
    sync(submit_job, stores, owner, account)
    seen, cursor = read_all(shim_url, token, account_id=account)
    ids = [c["id"] for c in seen]
    stop = threading.Event()
    collected: list[dict] = []

    def reader() -> None:
        nonlocal cursor
        while not stop.is_set():
            page, cursor = read_all(shim_url, token, cursor, account_id=account)
            collected.extend(page)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for round_ in range(4):
            for company_id in ids[round_ * 5 : round_ * 5 + 5]:
                control.change_company(company_id, name=f"Round {round_} {company_id}")
            control.add_company(account, name=f"New in round {round_}")
            assert sync(submit_job, stores, owner, account).result["changes"]["updated"] == 5
    finally:
        stop.set()
        thread.join(30)
    tail, _ = read_all(shim_url, token, cursor, account_id=account)
    collected += tail
    # Each change seen once (a record changed once after the first read: 20 updates, 4 adds).
    keys = [(c["id"], c["changed_at"]) for c in collected]
    assert len(keys) == len(set(keys)) == 24
    assert sorted(c["action"] for c in collected) == ["added"] * 4 + ["updated"] * 20


def test_feed_input_is_checked_and_cursors_belong_to_their_feed(
    shim_url, token, worker, owner, stores, submit_job, sim_data, api_key
):
    first, second = sim_data.accounts_by_key[api_key][:2]
    sync(submit_job, stores, owner, first)
    cursor = get(shim_url, token, f"{P}/changes", kind="companies", account_id=first).json()[
        "data"
    ]["next_cursor"]
    feed_of_first = FeedQuery(owner=owner, kind="companies", callrail_account_id=first)
    huge = encode_cursor(feed_of_first, 10**30)
    cases = [
        ({}, "kind must be one of: accounts, companies, calls,"),
        ({"kind": "calendars"}, "kind must be one of: accounts, companies, calls,"),
        ({"kind": "companies"}, "account_id is required for every kind but accounts."),
        ({"kind": "calls"}, "account_id is required for every kind but accounts."),
        ({"kind": "companies", "account_id": second, "cursor": cursor}, "cursor is not valid"),
        ({"kind": "companies", "account_id": first, "cursor": "!!"}, "cursor is not valid"),
        ({"kind": "accounts", "filter": "added,removed"}, "filter must be"),
        ({"kind": "accounts", "modified_after": "yesterday"}, "modified_after must be"),
        ({"kind": "accounts", "limit": "0"}, "limit must be between 1 and 1000."),
        # Valid ISO 8601 whose UTC time leaves the years MongoDB (and Python) can hold.
        ({"kind": "accounts", "modified_after": "9999-12-31T23:59:59-01:00"}, "modified_after"),
        ({"kind": "accounts", "modified_after": "0001-01-01T00:00:00+01:00"}, "modified_after"),
        # A well-formed cursor of this very feed, with a number no 64-bit integer holds.
        ({"kind": "companies", "account_id": first, "cursor": huge}, "cursor is not valid"),
    ]
    for params, message in cases:
        answer = get(shim_url, token, f"{P}/changes", **params)
        assert answer.status_code == 400, params
        assert answer.json()["message"].startswith(message), answer.json()
    # Another owner's token reads its own (empty) feed, never this one.
    from api_shim.auth import issue_token
    from tests.conftest import OTHER_OWNER, TEST_SECRET

    other = issue_token(OTHER_OWNER, TEST_SECRET)
    theirs = get(shim_url, other, f"{P}/changes", kind="companies", account_id=first)
    assert theirs.status_code == 200 and theirs.json()["data"]["changes"] == []


@pytest.mark.pages_of(25)
def test_a_walk_whose_pages_shifted_marks_nothing_deleted(
    owner, stores, runtime, control, api_key, sim
):
    """A company is removed from CallRail after the walk read page 1: every later record moves
    up one place, and the first of page 2 is never seen, though it is still there."""
    from callrail_sync.job import JobParams, JobType, NewJob
    from tasks import sync as sync_tasks

    account = control.add_account(api_key, companies=60)
    client = runtime.client(api_key)
    client.page_concurrency = 1

    def walk(pages):
        params = JobParams(callrail_account_id=account)
        new = NewJob(owner=owner, type=JobType.SYNC_COMPANIES, params=params)
        job, _ = stores.jobs.create(new)
        confirm = sync_tasks.gone_from(client, account)
        return sync_tasks.store_pages(
            job, runtime, "companies", account, pages, confirm_gone=confirm
        ).result["changes"]

    walk(client.iter_company_pages(account))
    first_page: list[str] = []

    def shifting():
        for page, records in client.iter_company_pages(account):
            yield page, records
            if page.number == 1:
                first_page.extend(str(r["id"]) for r in records)
                control.remove_company(first_page[0])

    shifted = walk(shifting())
    assert shifted["deleted"] == 0 and shifted["total"] == 59  # one missed, not gone
    assert stores.changes.counts(owner, "companies", account)["deleted"] == 0
    settled = walk(client.iter_company_pages(account))
    assert settled == {"added": 0, "updated": 0, "deleted": 1, "total": 59}
    deleted = stores.changes.read(
        FeedQuery(owner=owner, kind="companies", callrail_account_id=account, actions={"deleted"})
    ).changes
    assert [c.id for c in deleted] == [first_page[0]]


# --- a write applied twice ------------------------------------------------------------------


def snapshot_of(stores, n: int) -> str:
    stores.snapshots.begin("snap_retry", OWNER, "companies", "ACC" + "b2" * 16)
    records = [{"id": f"COM{i:032d}", "name": f"Company {i}"} for i in range(n)]
    stores.snapshots.write_records("companies", "snap_retry", OWNER, records)
    return "snap_retry"


def test_a_retried_write_the_server_had_applied_leaves_each_change_once(stores, monkeypatch):
    """The driver sends a write again when its answer was lost; a server that restarted in
    between keeps no record of the first (SecantusDB keeps it in memory; a fault test's
    restart failed a job so) and answers our own inserts as duplicate keys. Here each batch is
    sent twice, as such a retry would send it. The restart itself: tests/test_faults.py."""
    snapshot = snapshot_of(stores, 30)
    records = stores.db["callrail_records"]
    applied = records.bulk_write

    def sent_twice(ops, **options):
        applied(ops, **options)
        return applied(ops, **options)  # the retry of a write the server had applied

    monkeypatch.setattr(records, "bulk_write", sent_twice)
    monkeypatch.setattr(stores.changes, "_records", records)
    counts = stores.changes.track(snapshot)
    assert (counts.added, counts.total) == (30, 30)
    seqs = sorted(d["seq"] for d in records.find({}, {"seq": 1}))
    assert seqs == list(range(1, 31))  # each change once, numbered once


def test_a_duplicate_that_is_not_our_own_write_is_still_an_error(stores):
    snapshot = snapshot_of(stores, 3)
    feed = f"{OWNER}:companies:ACC" + "b2" * 16
    stored = stores.db["callrail_records"]
    stored.insert_one({"_id": f"{feed}:COM{0:032d}", "feed": "elsewhere", "seq": 99})
    with pytest.raises(BulkWriteError):
        stores.changes.track(snapshot)
