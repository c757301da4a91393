"""CallRail's deliveries to our receiver: signatures checked against the raw bytes, each
delivery kept once before it is answered, normalized into call events, listed per owner, and
our own receiver registered when a webhook is made without a URL."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from callrail_sync.callrail import deliveries
from callrail_sync.callrail.webhooks import EVENT_KEYS, RECEIVER_EVENTS
from callrail_sync.cli.processes import wait_until
from callrail_sync.stores.receivers import Registration
from callrail_sync.stores.streams import RecordQuery, feed_id
from callrail_sync.streams import STREAMS

from .conftest import OTHER_OWNER, OWNER, listening_socket, serving, wait_job

P = "/v1/e/callrail"
EXAMPLE = Path(__file__).parent / "fixtures" / "callrail_signed_example.json"
EXAMPLE_KEY = "072e77e426f92738a72fe23c4d1953b4"
EXAMPLE_SIGNATURE = "UZAHbUdfm3GqL7qzilGozGzWV64="
KEY = "5f0c8f2c3b9a4e6d8a1b2c3d4e5f6a7b"


# --- signatures, events and keys (no server) ---------------------------------------------


def test_callrails_published_example_verifies_byte_for_byte():
    raw = EXAMPLE.read_bytes()
    assert deliveries.sign(EXAMPLE_KEY, raw) == EXAMPLE_SIGNATURE
    assert deliveries.verify(EXAMPLE_KEY, raw, EXAMPLE_SIGNATURE)
    assert deliveries.event_of(json.loads(raw)) == "post_call"  # a voicemail: it has a duration


@pytest.mark.parametrize(
    "change",
    [
        "re-serialized",
        "truncated",
        "trailing newline",
        "other key",
        "sha256 hex",
        "sha1 hex",
        "empty",
        "not base64",
    ],
)
def test_anything_but_the_exact_bytes_and_key_is_refused(change):
    raw, key, signature = EXAMPLE.read_bytes(), EXAMPLE_KEY, EXAMPLE_SIGNATURE
    if change == "re-serialized":  # what a receiver that parses first would verify
        raw = json.dumps(json.loads(raw)).encode()
    elif change == "truncated":
        raw = raw[:-1]
    elif change == "trailing newline":
        raw = raw + b"\n"
    elif change == "other key":
        key = KEY
    elif change == "sha256 hex":  # the mistake several public receivers made
        signature = hmac.new(key.encode(), raw, hashlib.sha256).hexdigest()
    elif change == "sha1 hex":
        signature = hmac.new(key.encode(), raw, hashlib.sha1).hexdigest()
    elif change == "empty":
        signature = ""
    else:
        signature = "not base64!"
    assert not deliveries.verify(key, raw, signature)


def test_our_own_vectors():
    # Computed once with `openssl dgst -sha1 -hmac KEY -binary | base64`.
    assert deliveries.sign("k", b"{}") == "zV24rYCl921Uzm2HnI4cDhycjcw="
    assert deliveries.sign("secret-key", b'{"a":1}') == "cWLCFjOrMyA8Dzrjll8dhybnYMA="
    assert deliveries.verify("secret-key", b'{"a":1}', "cWLCFjOrMyA8Dzrjll8dhybnYMA=")
    assert not deliveries.verify(None, b"{}", "zV24rYCl921Uzm2HnI4cDhycjcw=")


def test_events_and_dedupe_keys():
    # Only a guess where the URL does not name the event (ours always does).
    ringing = {"resource_id": "CAL1", "duration": 0, "answered": False, "call_type": "missed"}
    ended = {"resource_id": "CAL1", "duration": 1, "answered": False}
    changed = {"resource_id": "CAL1", "duration": 12, "changes": ["tags"]}
    form = {"resource_id": "FOR1", "form_data": {"name": "A"}}
    events = [deliveries.event_of(p) for p in (ringing, ended, changed, form)]
    assert events == ["pre_call", "post_call", "updated_call", "form_captured"]
    key = deliveries.dedupe_key
    assert key("COM1", "post_call", "CAL1", []) == key("COM1", "post_call", "CAL1", [])
    assert key("COM1", "post_call", "CAL1", []) != key("COM1", "pre_call", "CAL1", [])
    assert key("COM1", "updated_call", "CAL1", ["tags"]) != key(
        "COM1", "updated_call", "CAL1", ["note"]
    )
    # Two updates of the same fields are two deliveries; the same bytes again are one.
    first, second = b'{"tags":["a"]}', b'{"tags":["a","b"]}'
    assert key("COM1", "updated_call", "CAL1", ["tags"], first) != key(
        "COM1", "updated_call", "CAL1", ["tags"], second
    )
    assert key("COM1", "updated_call", "CAL1", ["tags"], first) == key(
        "COM1", "updated_call", "CAL1", ["tags"], first
    )
    # Without an id, a delivery is told apart by its bytes.
    assert key("COM1", "form_captured", "", [], b"1") != key("COM1", "form_captured", "", [], b"2")
    assert deliveries.resource_id({"id": 766970532}) == "766970532"
    assert deliveries.named_event("post_call") == "post_call" and not deliveries.named_event("x")


def test_signing_keys_never_reach_a_log_line():
    from callrail_sync.logs import scrub

    line = json.dumps({"command": json.dumps({"signing_key": KEY})})
    assert KEY not in scrub(line) and KEY not in scrub(f"signing_key={KEY}")


# --- the receiver, over real HTTP ---------------------------------------------------------


@pytest.fixture
def shim_socket():
    sock = listening_socket()
    yield sock
    sock.close()


@pytest.fixture
def settings(settings, shim_socket):
    """The conftest's settings, with this shim's address as the public one; reconciliation
    leaves no grace to deliveries (the simulator's are made at once)."""
    port = shim_socket.getsockname()[1]
    public = f"http://127.0.0.1:{port}"
    return settings.model_copy(update={"public_base_url": public, "reconcile_grace": 0.0})


@pytest.fixture
def shim_app(runtime, queue):
    from api_shim.app import create_app

    return create_app(runtime.settings, runtime=runtime, queue=queue)


@pytest.fixture
def shim_url(shim_app, shim_socket):
    with serving(shim_app, shim_socket) as url:
        yield url


@pytest.fixture
def company(sim_data, api_key) -> tuple[str, str]:
    account = sim_data.accounts_by_key[api_key][0]
    return account, sim_data.companies(sim_data.accounts[account])[0]["id"]


@pytest.fixture
def registered(stores, company, owner):
    account, company_id = company
    registration = Registration(
        callrail_account_id=account, company_id=company_id, integration_id="1", signing_key=KEY
    )
    stores.receivers.register(OWNER, registration)
    return account, company_id


def deliver(base: str, company_id: str, payload: dict | bytes, key: str | None = KEY, **headers):
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    if key is not None:
        headers.setdefault("Signature", deliveries.sign(key, raw))
    headers.setdefault("Content-Type", "application/json")
    return requests.post(f"{base}{P}/inbound/{company_id}", data=raw, headers=headers, timeout=10)


def call(resource: str, **fields: object) -> dict:
    return {"resource_id": resource, "start_time": "2026-12-06T10:00:00-05:00", **fields}


def wait_events(stores, n: int, timeout: float = 15.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(stores.db["callrail_call_events"].find({}))
        if len(found) >= n:
            return found
        time.sleep(0.05)
    raise AssertionError(f"expected {n} call events, have {len(found)}")


def test_a_delivery_is_kept_once_and_becomes_one_event(shim_url, registered, stores, worker):
    _, company_id = registered
    payload = call("CAL0001", duration=42, answered=True, customer_name="Ann")
    first = deliver(shim_url, company_id, payload)
    assert first.status_code == 200, first.text
    assert first.json()["data"] == {"received": True, "duplicate": False, "event": "post_call"}
    again = deliver(shim_url, company_id, payload)  # CallRail never retries; a proxy might
    assert again.status_code == 200 and again.json()["data"]["duplicate"] is True
    (event,) = wait_events(stores, 1)
    assert stores.db["callrail_inbox"].count_documents({}) == 1
    assert event["event"] == "post_call" and event["resource_id"] == "CAL0001"
    assert event["source"] == "webhook" and event["fields"]["customer_name"] == "Ann"
    counts = stores.receivers.get(company_id).counts
    assert counts == {"received": 1, "duplicates": 1}


def test_forged_missing_and_unknown_are_refused_and_nothing_is_kept(
    shim_url, registered, stores, settings
):
    _, company_id = registered
    # No worker reads the key again here: a forgery waits INBOUND_KEY_WAIT for nothing.
    settings.inbound_key_wait = 0.5
    payload = call("CAL0002", duration=3)
    assert deliver(shim_url, company_id, payload, key="wrong-key").status_code == 401
    assert deliver(shim_url, company_id, payload, key=None).status_code == 401
    raw = json.dumps(payload).encode()
    resigned = deliver(shim_url, company_id, raw + b" ", Signature=deliveries.sign(KEY, raw))
    assert resigned.status_code == 401
    unknown = deliver(shim_url, "COM" + "0" * 32, payload)
    # A company without our receiver is answered as a forged delivery: nothing tells them apart.
    forged = deliver(shim_url, company_id, payload, key="wrong-key")
    assert unknown.status_code == forged.status_code == 401
    assert unknown.json() == forged.json()
    assert stores.db["callrail_inbox"].count_documents({}) == 0
    assert stores.receivers.get(company_id).counts == {"forged": 4}


def test_refused_deliveries_are_limited_per_source_and_company(
    shim_url, registered, stores, runtime, settings
):
    """Beyond INBOUND_FAILURES_PER_MINUTE refused deliveries from one address to one company,
    the answer is 429 and nothing is read or counted; the real CallRail key still gets in."""
    from api_shim.app import create_app

    _, company_id = registered
    payload = call("CAL0009", duration=3)
    settings.inbound_key_wait = 0.5  # the runtime's: no worker reads the key again here
    limited = settings.model_copy(update={"inbound_failures_per_minute": 3})
    with serving(create_app(limited, runtime=runtime)) as url:
        answers = [deliver(url, company_id, payload, key="wrong-key") for _ in range(5)]
        assert [a.status_code for a in answers] == [401, 401, 401, 429, 429]
        assert answers[-1].headers["Retry-After"] == "60"
        unknown = [deliver(url, "COM" + "1" * 32, payload) for _ in range(4)]
        assert [a.status_code for a in unknown] == [401, 401, 401, 429]
        assert stores.receivers.get(company_id).counts == {"forged": 3}
        assert deliver(url, company_id, payload).status_code == 200


def test_a_signed_body_replayed_as_another_event_or_company_is_not_kept_as_one(
    shim_url, registered, stores, company
):
    """The `?event=` of the URL is not signed: the same pre-call bytes posted as a post-call
    are one delivery, so the genuine post-call that follows is kept; a body that names another
    company is refused."""
    _, company_id = registered
    pre = call("CAL0010", duration=0, answered=False)
    raw = json.dumps(pre).encode()
    url = f"{shim_url}{P}/inbound/{company_id}"
    headers = {"Signature": deliveries.sign(KEY, raw), "Content-Type": "application/json"}
    first = requests.post(f"{url}?event=pre_call", data=raw, headers=headers, timeout=10)
    assert first.json()["data"] == {"received": True, "duplicate": False, "event": "pre_call"}
    replay = requests.post(f"{url}?event=post_call", data=raw, headers=headers, timeout=10)
    assert replay.status_code == 200 and replay.json()["data"]["duplicate"] is True
    post = call("CAL0010", duration=42, answered=True)
    genuine = requests.post(
        f"{url}?event=post_call",
        data=json.dumps(post).encode(),
        headers={"Signature": deliveries.sign(KEY, json.dumps(post).encode())},
        timeout=10,
    )
    assert genuine.json()["data"] == {"received": True, "duplicate": False, "event": "post_call"}
    # A post-call body posted to the pre-call URL is still a post-call: the payload tells.
    later = call("CAL0011", duration=7, answered=True)
    raw_later = json.dumps(later).encode()
    told = requests.post(
        f"{url}?event=pre_call",
        data=raw_later,
        headers={"Signature": deliveries.sign(KEY, raw_later)},
        timeout=10,
    )
    assert told.json()["data"]["event"] == "post_call"
    elsewhere = call("CAL0012", duration=5, company_resource_id="COM" + "9" * 32)
    refused = deliver(shim_url, company_id, elsewhere)
    assert refused.status_code == 400
    assert refused.json()["message"] == "The delivery names another company."
    assert stores.db["callrail_inbox"].count_documents({}) == 3


def test_the_body_is_bounded(shim_url, registered):
    _, company_id = registered
    huge = call("CAL0003", duration=1, transcription="x" * (300 * 1024))
    answer = deliver(shim_url, company_id, huge)
    assert answer.status_code == 413 and answer.json()["errno"] == 413


def test_calls_are_listed_newest_first_by_cursor_for_their_owners_only(
    shim_url, registered, stores, worker, token, settings
):
    from api_shim.auth import issue_token

    account, company_id = registered
    for n in range(5):
        assert deliver(shim_url, company_id, call(f"CAL10{n}", duration=n + 1)).status_code == 200
        wait_events(stores, n + 1)  # one at a time: the order they were stored in is known
    headers = {"Authorization": f"Bearer {token}"}
    seen, cursor = [], None
    while True:
        params = {"account_id": account, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = requests.get(f"{shim_url}{P}/calls", params=params, headers=headers, timeout=10)
        assert page.status_code == 200, page.text
        data = page.json()["data"]
        seen += [c["call_id"] for c in data["calls"]]
        if not data["has_more"]:
            break
        cursor = data["next_cursor"]
    assert seen == [f"CAL10{n}" for n in reversed(range(5))]
    other = {"Authorization": f"Bearer {issue_token(OTHER_OWNER, settings.jwt_secret)}"}
    theirs = requests.get(
        f"{shim_url}{P}/calls", params={"account_id": account}, headers=other, timeout=10
    )
    assert theirs.status_code == 200 and theirs.json()["data"]["calls"] == []
    for bad in ({"account_id": account, "cursor": "nope"}, {}, {"account_id": account, "limit": 0}):
        refused = requests.get(f"{shim_url}{P}/calls", params=bad, headers=headers, timeout=10)
        assert refused.status_code == 400, bad


def test_a_webhook_without_a_url_registers_our_receiver_and_reads_its_key_again(
    shim_url, company, owner, stores, worker, token, sim, sim_data, settings
):
    account, company_id = company
    answer = requests.post(
        f"{shim_url}{P}/companies/webhook",
        json={"account_id": account, "company_id": company_id},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    job = wait_job(stores, answer.json()["data"]["job_id"])
    assert job.status == "succeeded", job.error
    ours = f"{shim_url}{P}/inbound/{company_id}"
    assert job.result["url"] == ours and set(job.result["events"]) == set(RECEIVER_EVENTS)
    (integration,) = [i for i in sim_data.integrations.values() if i["company_id"] == company_id]
    for event in RECEIVER_EVENTS:  # one URL per event: CallRail's deliveries do not name theirs
        key = EVENT_KEYS[event]
        assert integration["config"][key] == [f"{ours}?event={key.removesuffix('_webhook')}"]
    receiver = stores.receivers.get(company_id)
    assert receiver.owners == [OWNER] and receiver.signing_key == integration["signing_key"]
    assert "signing_key" not in json.dumps(job.result)

    # CallRail's key changed since: the first delivery that fails makes us read it again.
    stores.receivers.set_key(company_id, "a-key-that-is-no-longer-right")
    delivered = deliver(
        shim_url, company_id, call("CAL0009", duration=5), integration["signing_key"]
    )
    assert delivered.status_code == 200, delivered.text
    assert stores.receivers.get(company_id).signing_key == integration["signing_key"]
    # A forged one right after does not make us read it again (at most once a minute); it is
    # refused once the reading asked for meanwhile is INBOUND_KEY_WAIT old (0.5 s here).
    settings.inbound_key_wait = 0.5
    reads = len(sim.requests_logged("GET", f"/integrations/{integration['id']}.json"))
    assert deliver(shim_url, company_id, call("CAL0010", duration=5), "forged").status_code == 401
    assert len(sim.requests_logged("GET", f"/integrations/{integration['id']}.json")) == reads


def test_call_events_reach_the_owners_stream_and_status_shows_the_receiver(
    shim_url, shim_app, registered, stores, worker, token
):
    _, company_id = registered
    auth = {"Authorization": f"Bearer {token}"}
    stream = requests.get(f"{shim_url}{P}/events", headers=auth, stream=True, timeout=30)
    lines = stream.iter_lines(decode_unicode=True)
    assert next(lines) == ": connected"
    hub = shim_app.state.services.hub  # subscribed to Redis before the delivery
    assert wait_until(hub.connected.is_set, 10, 0.01)
    assert deliver(shim_url, company_id, call("CAL0500", duration=9)).status_code == 200
    kind = None
    for line in lines:
        if line.startswith("event: "):
            kind = line[len("event: ") :]
        if line.startswith("data: ") and kind == "call":
            seen = json.loads(line[len("data: ") :])
            break
    stream.close()
    assert seen["call_id"] == "CAL0500" and seen["event"] == "post_call"
    status = requests.get(f"{shim_url}{P}/status", headers=auth, timeout=10).json()["data"]
    (receiver,) = status["receivers"]
    assert receiver["company_id"] == company_id and receiver["receiving"] is True
    assert receiver["counts"] == {"received": 1} and "signing_key" not in json.dumps(status)


# --- end to end: the simulator places calls and delivers them, once, signed -----------------


def make_receiver(shim_url, token, stores, account, company_id):
    answer = requests.post(
        f"{shim_url}{P}/companies/webhook",
        json={"account_id": account, "company_id": company_id},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    job = wait_job(stores, answer.json()["data"]["job_id"])
    assert job.status == "succeeded", job.error


def calls_of(shim_url, token, account) -> list[dict]:
    answer = requests.get(
        f"{shim_url}{P}/calls",
        params={"account_id": account, "limit": 1000},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]["calls"]


def test_placed_calls_arrive_and_a_dropped_delivery_is_recovered_by_reconciliation(
    shim_url, company, owner, stores, worker, token, sim, submit_job
):
    account, company_id = company
    make_receiver(shim_url, token, stores, account, company_id)
    whole = sim.place_call(company_id, updated={"tags": ["lead"]})
    lost = sim.place_call(company_id, drop=["post_call"], duration=61)
    assert sim.settle(10)
    wait_events(stores, 4)  # whole: pre, post, updated; lost: pre only
    events = {(c["call_id"], c["event"]) for c in calls_of(shim_url, token, account)}
    assert events == {
        (whole["id"], "pre_call"),
        (whole["id"], "post_call"),
        (whole["id"], "updated_call"),
        (lost["id"], "pre_call"),
    }
    assert [d.status for d in sim.deliveries_logged() if not d.dropped] == [200] * 4

    job, _ = submit_job(OWNER, "calls_reconcile", callrail_account_id=account)
    done = wait_job(stores, job.id)
    assert done.status == "succeeded", done.error
    assert done.result["missed"] == 1 and done.result["inactive"] == {}
    recovered = [c for c in calls_of(shim_url, token, account) if c["source"] == "reconciled"]
    assert [(c["call_id"], c["event"]) for c in recovered] == [(lost["id"], "post_call")]
    assert recovered[0]["call"]["duration"] == 61
    assert stores.receivers.get(company_id).counts["missed"] == 1
    # The calls stream holds one record per call: the delivered one, the recovered one.
    feed = feed_id(OWNER, "calls", account)
    kept = stores.streams.read(RecordQuery(feed, STREAMS["calls"], limit=10)).records
    by_id = {r["id"]: r for r in kept}
    assert set(by_id) == {whole["id"], lost["id"]}
    assert by_id[whole["id"]]["tracking"]["sources"] == ["webhook"]
    assert by_id[lost["id"]]["tracking"]["sources"] == ["history"]
    assert by_id[lost["id"]]["duration"] == 61
    calls_requests = sim.requests_logged("GET", "/calls.json")
    assert calls_requests and all("relative_pagination=true" in r.query for r in calls_requests)

    # Again: nothing new is missed. Then CallRail disables the integration: it shows.
    integration = next(i for i in sim.data.integrations.values() if i["company_id"] == company_id)
    integration["state"] = "disabled"
    job, _ = submit_job(OWNER, "calls_reconcile", callrail_account_id=account)
    again = wait_job(stores, job.id)
    assert again.result["missed"] == 0 and again.result["inactive"] == {company_id: "disabled"}
    status = requests.get(
        f"{shim_url}{P}/status", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()["data"]
    assert [r["receiving"] for r in status["receivers"]] == [False]


def test_a_late_delivery_after_reconciliation_is_the_same_event(
    shim_url, company, owner, stores, worker, token, sim, submit_job
):
    account, company_id = company
    make_receiver(shim_url, token, stores, account, company_id)
    call_ = sim.place_call(company_id, drop=["pre_call", "post_call"])
    assert sim.settle(10)
    job, _ = submit_job(OWNER, "calls_reconcile", callrail_account_id=account)
    assert wait_job(stores, job.id).result["missed"] == 1
    # CallRail's post-call delivery comes after all (it can be 20 minutes late).
    (integration,) = [i for i in sim.data.integrations.values() if i["company_id"] == company_id]
    late = {"resource_id": call_["id"], "duration": call_["duration"], "answered": True}
    assert deliver(shim_url, company_id, late, integration["signing_key"]).status_code == 200
    deadline = time.monotonic() + 10
    while stores.db["callrail_inbox"].count_documents({"state": "pending"}) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    (event,) = stores.db["callrail_call_events"].find({"resource_id": call_["id"]})
    assert event["source"] == "reconciled" and event["webhook_at"] is not None


def test_a_missed_call_keeps_both_deliveries_and_two_updates_of_one_field_are_two(
    shim_url, company, owner, stores, worker, token, sim
):
    account, company_id = company
    make_receiver(shim_url, token, stores, account, company_id)
    # Pre- and post-call of a call nobody answered look alike (duration 0): the URL tells.
    missed = sim.place_call(company_id, answered=False, duration=0)
    assert sim.settle(10)
    wait_events(stores, 2)
    (integration,) = [i for i in sim.data.integrations.values() if i["company_id"] == company_id]
    url = f"{shim_url}{P}/inbound/{company_id}?event=updated_call"
    for tags in (["a"], ["a", "b"]):
        body = json.dumps({"resource_id": missed["id"], "tags": tags, "changes": ["tags"]}).encode()
        signature = deliveries.sign(integration["signing_key"], body)
        answer = requests.post(url, data=body, headers={"Signature": signature}, timeout=10)
        assert answer.status_code == 200 and answer.json()["data"]["duplicate"] is False
    wait_events(stores, 4)
    events = sorted(c["event"] for c in calls_of(shim_url, token, account))
    assert events == ["post_call", "pre_call", "updated_call", "updated_call"]


def test_reconciliation_goes_on_past_a_company_it_cannot_see_and_knows_old_numeric_ids(
    shim_url, company, owner, stores, worker, token, sim, submit_job
):
    account, company_id = company
    make_receiver(shim_url, token, stores, account, company_id)
    gone = Registration(
        callrail_account_id=account, company_id="COM" + "f" * 32, integration_id="9"
    )
    stores.receivers.register(OWNER, gone)
    lost = sim.place_call(company_id, drop=["pre_call", "post_call"])
    old = sim.place_call(company_id, drop=["pre_call", "post_call"])
    assert sim.settle(10)
    # A post-call delivery that names the call only by its old numeric id.
    (integration,) = [i for i in sim.data.integrations.values() if i["company_id"] == company_id]
    body = {
        "id": 123456789,
        "duration": 30,
        "start_time": old["start_time"],
        "customer_phone_number": old["customer_phone_number"],
    }
    delivered = deliver(shim_url, company_id, body, integration["signing_key"])
    assert delivered.status_code == 200
    wait_events(stores, 1)
    job, _ = submit_job(OWNER, "calls_reconcile", callrail_account_id=account)
    done = wait_job(stores, job.id)
    assert done.status == "succeeded", done.error
    assert done.result["missed"] == 1 and done.result["inactive"] == {
        gone.company_id: "unreachable"
    }
    recovered = [
        c["call_id"] for c in calls_of(shim_url, token, account) if c["source"] != "webhook"
    ]
    assert recovered == [lost["id"]]


def test_deliveries_that_come_while_the_key_is_read_again_are_all_kept(
    shim_url, company, owner, stores, worker, token, sim
):
    account, company_id = company
    make_receiver(shim_url, token, stores, account, company_id)
    (integration,) = [i for i in sim.data.integrations.values() if i["company_id"] == company_id]
    stores.receivers.set_key(company_id, "rotated-away")
    sim.set_knobs(latency=0.5)  # reading the key again takes a while
    bodies = [call(f"CAL07{n:02d}", duration=n + 1) for n in range(4)]
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(lambda b: deliver(shim_url, company_id, b, integration["signing_key"]), bodies)
        )
    assert [a.status_code for a in answers] == [200] * 4
    # Garbage that cannot be a CallRail signature never makes us read the key.
    sim.set_knobs(latency=0.0)
    key_reads = f"/integrations/{integration['id']}.json"
    reads = len(sim.requests_logged("GET", key_reads))
    assert reads >= 2  # the webhook's creation, and the reading again above
    stores.receivers.set_key(company_id, "rotated-away-again")
    raw = json.dumps(call("CAL0799", duration=1)).encode()
    refused = deliver(shim_url, company_id, raw, None, Signature="AAAA")
    assert refused.status_code == 401
    assert len(sim.requests_logged("GET", key_reads)) == reads


def test_no_webhook_is_moved_onto_our_receivers_url(shim_url, company, owner, token):
    account, company_id = company
    ours = f"{shim_url}{P}/inbound/{company_id}"
    body = {"account_id": account, "company_id": company_id, "webhook_id": "web_0123456789abcdef"}
    answer = requests.put(
        f"{shim_url}{P}/companies/webhook",
        json={**body, "webhook_url": ours},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 400 and "receiver keeps its URL" in answer.json()["message"]


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_an_empty_webhook_url_is_the_spec_400_not_our_receiver(
    shim_url, company, owner, token, stores, method
):
    account, company_id = company
    body = {"account_id": account, "company_id": company_id, "webhook_url": ""}
    if method == "PUT":
        body |= {"webhook_id": "web_0123456789abcdef", "status": "enabled"}
    answer = requests.request(
        method,
        f"{shim_url}{P}/companies/webhook",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    message = {
        "POST": "Callrail account id, company id and webhook url are required.",
        "PUT": "Callrail account id, company id, webhook id and webhook url or status are "
        "required.",
    }[method]
    assert answer.status_code == 400
    assert answer.json() == {"success": False, "errno": 400, "message": message}
    assert stores.jobs.recent(OWNER) == []


def test_what_an_owner_reads_follows_what_its_key_sees_now(
    shim_url, company, stores, owner, api_key, sim_data, worker, submit_job, token
):
    """A co-owner whose key is deleted, replaced, or no longer lists a company stops reading
    its calls (GET /calls); a companies sync with a key that lists it again vouches for it."""
    from callrail_sync.budget import fingerprint
    from callrail_sync.stores.database import utcnow
    from callrail_sync.stores.inbox import NewCallEvent

    account, company_id = company
    gone = "COM" + "7" * 32  # our receiver on a company this key's listing does not have
    for listed in (company_id, gone):
        registration = Registration(
            callrail_account_id=account, company_id=listed, integration_id="1", signing_key=KEY
        )
        stores.receivers.register(OWNER, registration, fingerprint(api_key))
        event = NewCallEvent(
            id=f"evt_{listed}",
            owners=[OWNER],
            callrail_account_id=account,
            company_id=listed,
            kind="call",
            event="post_call",
            resource_id=f"CAL{listed[-4:]}",
            source="webhook",
            received_at=utcnow(),
        )
        stores.inbox.record([event])

    def readable() -> list[str]:
        answer = requests.get(
            f"{shim_url}{P}/calls",
            params={"account_id": account},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        return sorted(c["company_id"] for c in answer.json()["data"]["calls"])

    assert readable() == sorted([company_id, gone])
    stores.keys.remove(OWNER)  # the dashboard deleted the key
    assert readable() == []
    stores.keys.set(OWNER, sim_data.api_keys[1])  # another key: it never saw these companies
    assert readable() == []
    stores.keys.set(OWNER, api_key)
    assert readable() == sorted([company_id, gone])
    job, _ = submit_job(OWNER, "sync_companies", callrail_account_id=account)
    assert wait_job(stores, job.id).status.value == "succeeded"
    # The key's listing has the company, not the other one: the owner reads only the first.
    assert readable() == [company_id]
    assert OWNER not in stores.receivers.get(gone).owners


def test_inbox_entries_and_call_events_expire_by_ttl_indexes(stores, settings):
    """Retention is MongoDB's own (TTL indexes), at the documented defaults, and a changed
    setting changes the index in place."""
    from callrail_sync.stores import on_database

    def ttl(collection: str) -> int | None:
        for index in stores.db[collection].list_indexes():
            if index["name"] == "ttl_received_at":
                return int(index["expireAfterSeconds"])
        return None

    assert ttl("callrail_inbox") == 30 * 86400
    assert ttl("callrail_call_events") == 760 * 86400
    shorter = settings.model_copy(
        update={"inbox_retention_days": 7, "call_events_retention_days": 400}
    )
    on_database(stores.db, settings=shorter)
    assert (ttl("callrail_inbox"), ttl("callrail_call_events")) == (7 * 86400, 400 * 86400)
    on_database(stores.db, settings=settings)  # the suite's database back at the defaults
