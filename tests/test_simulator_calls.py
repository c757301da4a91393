"""The simulator's calls over real HTTP: calls.json and its two ways to page, and the signed
webhook deliveries of placed calls to a real receiver (CALLRAIL_API.md)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from simulator import SimData, SimServer
from simulator.control import SimControl
from simulator.deliveries import sign

EVENTS = ("pre_call", "post_call", "updated_call")

# CallRail's published test vector (apidocs "Validating Payloads"), byte for byte.
VECTOR_KEY = "072e77e426f92738a72fe23c4d1953b4"
VECTOR_SIGNATURE = "UZAHbUdfm3GqL7qzilGozGzWV64="
VECTOR_BODY = (
    b'{"answered":false,"business_phone_number":"","call_type":"voicemail","company_id":155920786,'
    b'"company_name":"Boost Marketing","company_time_zone":"America/Los_Angeles","created_at":"20'
    b'18-02-19T13:41:00.252-05:00","customer_city":"Rochester","customer_country":"US","customer_'
    b'name":"Kaylah Mills","customer_phone_number":"+12148654559","customer_state":"PA","device_t'
    b'ype":"","direction":"inbound","duration":"13","first_call":false,"formatted_call_type":"Voi'
    b'cemail","formatted_customer_location":"Rochester, PA","formatted_business_phone_number":"",'
    b'"formatted_customer_name":"Kaylah Mills","prior_calls":16,"formatted_customer_name_or_phone'
    b'_number":"Kaylah Mills","formatted_customer_phone_number":"214-865-4559","formatted_duratio'
    b'n":"13s","formatted_tracking_phone_number":"404-555-8514","formatted_tracking_source":"Goog'
    b'le Paid","formatted_value":"--","good_lead_call_id":715587840,"good_lead_call_time":"2016-0'
    b'6-17T10:23:33.363-04:00","id":766970532,"lead_status":"previously_marked_good_lead","note":'
    b'"","recording":"https://app.callrail.com/calls/766970532/recording/redirect?access_key=aaaa'
    b'ccccddddeeee","recording_duration":8,"source_name":"Google AdWords","start_time":"2018-02-1'
    b'9T13:41:00.236-05:00","tags":[],"total_calls":17,"tracking_phone_number":"+14045558514","tr'
    b'anscription":"","value":"","voicemail":true,"tracker_id":354024023,"keywords":"","medium":"'
    b'","referring_url":"","landing_page_url":"","last_requested_url":"","referrer_domain":"","co'
    b'nversational_transcript":"","utm_source":"google","utm_medium":"cpc","utm_term":"","utm_con'
    b'tent":"","utm_campaign":"Google AdWords","utma":"","utmb":"","utmc":"","utmv":"","utmz":"",'
    b'"ga":"","gclid":"","integration_data":[{"integration":"Webhooks","data":null}],"keywords_sp'
    b'otted":"","recording_player":"https://app.callrail.com/calls/766970532/recording?access_ke'
    b'y=aaaabbbbccccdddd","speaker_percent":"","call_highlights":[],"callercity":"Rochester","cal'
    b'lercountry":"US","callername":"Kaylah Mills","callernum":"+12148654559","callerstate":"PA",'
    b'"callsource":"google_paid","campaign":"","custom":"","datetime":"2018-02-19 18:41:00","dest'
    b'inationnum":"","ip":"","kissmetrics_id":"","landingpage":"","referrer":"","referrermedium":'
    b'"","score":1,"tag":"","trackingnum":"+14045558514","timestamp":"2018-02-19T13:41:00.236-05:'
    b'00"}'
)


# --- a webhook receiver on a real socket ----------------------------------------------------


class Receiver(ThreadingHTTPServer):
    """Records every POST (path, headers, raw body) and answers with the status set for its
    path (200 by default), after the delay set for it."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Receive)
        self.got: list[tuple[str, dict[str, str], bytes]] = []
        self.status: dict[str, int] = {}
        self.delay: dict[str, float] = {}
        self.lock = threading.Lock()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{path}"

    def bodies(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(body) for p, _, body in self.got if p == f"/{path}"]

    def paths(self) -> list[str]:
        with self.lock:
            return [p for p, _, _ in self.got]


class _Receive(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.got.append((self.path, dict(self.headers), body))
        time.sleep(self.server.delay.get(self.path.lstrip("/"), 0.0))
        self.send_response(self.server.status.get(self.path.lstrip("/"), 200))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


# --- helpers --------------------------------------------------------------------------------


def api(sim: SimServer, key: str, method: str, path: str, body: Any = None, **params: Any):
    return requests.request(
        method,
        sim.base_url + path,
        json=body,
        params=params,
        headers={"Authorization": f'Token token="{key}"'},
        timeout=5,
    )


def control(sim: SimServer, method: str, path: str, body: Any = None, **params: Any):
    url = sim.base_url.replace("/v3", "/_sim") + path
    return requests.request(method, url, json=body, params=params, timeout=15)


def place(sim: SimServer, company_id: str, **fields: Any) -> dict[str, Any]:
    """A call placed over HTTP, as a consumer's test would place one."""
    return SimControl(sim.base_url).place_call(company_id, **fields)


def webhooks(sim: SimServer, key: str, account: str, company: str, urls: dict[str, str]):
    """A Webhooks integration for a company, created through the API; with its signing key."""
    config = {f"{event}_webhook": [url] for event, url in urls.items()}
    body = {"type": "Webhooks", "company_id": company, "config": config}
    created = api(sim, key, "POST", f"/a/{account}/integrations.json", body)
    assert created.status_code == 201
    path = f"/a/{account}/integrations/{created.json()['id']}.json"
    return api(sim, key, "GET", path, fields="signing_key").json()


def verifies(signing_key: str, body: bytes, signature: str) -> bool:
    """A receiver's check, written independently of the simulator's signer."""
    digest = hmac.new(signing_key.encode(), body, hashlib.sha1).digest()
    return hmac.compare_digest(base64.b64encode(digest).decode(), signature)


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat(timespec="milliseconds")


@pytest.fixture
def account(sim_data: SimData, api_key: str) -> str:
    return sim_data.accounts_by_key[api_key][0]


@pytest.fixture
def company(sim_data: SimData, account: str) -> str:
    companies = sim_data.companies(sim_data.accounts[account])
    return str(next(c["id"] for c in companies if c["status"] == "active"))


@pytest.fixture
def all_events(sim, api_key, account, company, receiver) -> dict[str, Any]:
    """The company's integration, each event to its own path of the receiver."""
    return webhooks(sim, api_key, account, company, {e: receiver.url(e) for e in EVENTS})


# --- placing calls --------------------------------------------------------------------------


def test_a_placed_call_answers_201_in_calls_json_form_and_is_listed(sim, api_key, account, company):
    call = place(sim, company, customer_name="Kaylah Mills", duration=13, answered=True)
    assert re.fullmatch(r"CAL[0-9a-f]{32}", call["id"])
    assert re.fullmatch(r"TRK[0-9a-f]{32}", call["tracker_id"])
    assert call["company_id"] == company and call["direction"] == "inbound"
    assert call["customer_name"] == "Kaylah Mills" and call["duration"] == 13
    assert call["tags"] == [] and call["note"] is None and call["recording"].startswith("https://")
    started = datetime.fromisoformat(call["start_time"])
    assert started.utcoffset() is not None and abs(started - datetime.now(UTC)) < timedelta(1)
    assert "legacy_id" not in call and "account_id" not in call
    listed = api(sim, api_key, "GET", f"/a/{account}/calls.json").json()
    (shown,) = listed["calls"]
    assert listed["total_records"] == 1
    assert shown["id"] == call["id"] and shown["customer_name"] == "Kaylah Mills"
    assert "company_id" not in shown and "tags" not in shown  # optional: only with fields=
    fields = "created_at,company_id,tracker_id,tags,note"
    extra = api(sim, api_key, "GET", f"/a/{account}/calls.json", fields=fields).json()["calls"][0]
    assert extra["company_id"] == company and extra["tracker_id"] == call["tracker_id"]
    assert extra["tags"] == [] and extra["note"] is None


def test_sim_place_call_in_python_returns_the_same_form(sim, company):
    call = sim.place_call(company, answered=False, voicemail=False, tags=["new"])
    assert call["answered"] is False and call["recording"] is None and call["tags"] == ["new"]
    assert sim.settle(5)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"company_id": "COMnope"}, 404),
        ({"company_id": "{removed}"}, 404),
        ({}, 400),
        ({"company_id": "{company}", "duration": -1}, 400),
        ({"company_id": "{company}", "answered": "yes"}, 400),
        ({"company_id": "{company}", "start_time": "2024-05-01T09:00:00"}, 400),
        ({"company_id": "{company}", "colour": "red"}, 400),
        ({"company_id": "{company}", "drop": ["answered_call"]}, 400),
        ({"company_id": "{company}", "updated": {"duration": 5}}, 400),
        ({"company_id": "{company}", "post_call_delay": -1}, 400),
    ],
)
def test_placing_refuses_unknown_or_removed_companies_and_bad_fields(
    sim, sim_data, account, company, body, status
):
    removed = sim_data.companies(sim_data.accounts[account])[-1]["id"]
    sim_data.remove_company(removed)
    text = json.dumps(body).replace("{company}", company).replace("{removed}", removed)
    answer = control(sim, "POST", "/calls", json.loads(text))
    assert answer.status_code == status and answer.json()["error"]
    assert sim.deliveries.pending == 0 and sim.calls.placed(sim_data.accounts[account]) == []


# --- deliveries -----------------------------------------------------------------------------


def test_sign_reproduces_callrail_s_published_test_vector():
    assert sign(VECTOR_KEY, VECTOR_BODY) == VECTOR_SIGNATURE


def test_each_event_is_delivered_once_signed_over_the_raw_bytes(
    sim, api_key, account, company, receiver, all_events
):
    call = place(sim, company, updated={"tags": ["good-lead"], "note": "called back"})
    done = control(sim, "GET", "/deliveries", wait=1).json()
    assert done["pending"] == 0
    assert sorted(receiver.paths()) == sorted(f"/{e}" for e in EVENTS)  # each exactly once
    for _, headers, body in receiver.got:
        assert headers["Content-Type"] == "application/json"
        assert verifies(all_events["signing_key"], body, headers["Signature"])
        assert not verifies("0" * 32, body, headers["Signature"])
        assert not verifies(all_events["signing_key"], body + b" ", headers["Signature"])
    (ring,), (post,), (updated,) = (receiver.bodies(e) for e in EVENTS)
    for payload in (ring, post, updated):
        assert isinstance(payload["id"], int) and payload["resource_id"] == call["id"]
        assert payload["company_resource_id"] == company
        assert payload["tracker_resource_id"] == call["tracker_id"]
        assert payload["start_time"] == call["start_time"]
        assert datetime.fromisoformat(payload["timestamp"]).utcoffset() is not None
    assert ring["answered"] is False and ring["duration"] == 0 and ring["recording"] is None
    assert post["duration"] == call["duration"] and post["answered"] == call["answered"]
    assert "changes" not in post and post["tags"] == []
    assert updated["changes"] == ["tags", "note"]
    assert updated["tags"] == ["good-lead"] and updated["note"] == "called back"
    assert [(d["event"], d["status"], d["dropped"]) for d in done["deliveries"]] == [
        (e, 200, False) for e in EVENTS
    ]
    assert {d["call_id"] for d in done["deliveries"]} == {call["id"]}
    # The change is the call's, not only the webhook's.
    path = f"/a/{account}/calls.json"
    (listed,) = api(sim, api_key, "GET", path, fields="tags,note").json()["calls"]
    assert [t["name"] for t in listed["tags"]] == ["good-lead"]
    assert listed["note"] == "called back"


def test_the_placement_answers_at_once_and_post_call_follows_after_the_delay(
    sim, company, receiver, all_events
):
    started = time.monotonic()
    place(sim, company, post_call_delay=0.6)
    assert time.monotonic() - started < 0.4
    assert sim.settle(5)
    (ring,), (post,) = receiver.bodies("pre_call"), receiver.bodies("post_call")
    gap = datetime.fromisoformat(post["timestamp"]) - datetime.fromisoformat(ring["timestamp"])
    assert gap >= timedelta(seconds=0.55)
    sim.set_knobs(post_call_delay=0.3)  # the knob, for calls that say nothing
    place(sim, company)
    assert sim.settle(5)
    first_ring, second_ring = receiver.bodies("pre_call")
    second_post = receiver.bodies("post_call")[1]
    wait = datetime.fromisoformat(second_post["timestamp"]) - datetime.fromisoformat(
        second_ring["timestamp"]
    )
    assert wait >= timedelta(seconds=0.25)


def test_dropped_events_are_logged_as_dropped_and_never_sent(sim, company, receiver, all_events):
    call = place(sim, company, drop=["pre_call", "updated_call"], updated={"note": "x"})
    assert sim.settle(5)
    assert receiver.paths() == ["/post_call"]
    logged = control(sim, "GET", "/deliveries").json()["deliveries"]
    assert [(d["event"], d["dropped"], d["status"]) for d in logged] == [
        ("pre_call", True, None),
        ("post_call", False, 200),
        ("updated_call", True, None),
    ]
    assert all(d["call_id"] == call["id"] for d in logged)


def test_the_drop_rate_loses_a_share_of_deliveries_the_same_way_each_run(
    sim_data, api_key, account, company, receiver
):
    def run() -> list[str]:
        data = SimData(seed=42, keys=2, accounts_per_key=2, companies_per_account=30)
        server = SimServer(data).start()
        try:
            webhooks(server, api_key, account, company, {"post_call": receiver.url("post")})
            control(server, "POST", "/knobs", {"delivery_drop_rate": 0.5})
            for _ in range(16):
                server.place_call(company)
            assert server.settle(5)
            return [d.call_id for d in server.deliveries_logged() if d.dropped]
        finally:
            server.stop()

    first = run()
    sent = len(receiver.bodies("post"))
    assert 2 <= len(first) <= 14 and sent == 16 - len(first)
    assert sorted(run()) == sorted(first)  # same seed, same calls: the same ones lost
    assert {b["resource_id"] for b in receiver.bodies("post")}.isdisjoint(first)


def test_all_deliveries_are_lost_at_rate_1(sim, company, receiver, all_events):
    sim.set_knobs(delivery_drop_rate=1.0)
    place(sim, company)
    assert sim.settle(5)
    assert receiver.got == [] and all(d.dropped for d in sim.deliveries_logged())
    assert len(sim.deliveries_logged()) == 2


def test_a_receiver_answering_500_gets_one_attempt_and_no_retry(sim, company, receiver, all_events):
    receiver.status["post_call"] = 500
    place(sim, company)
    assert sim.settle(5)
    time.sleep(0.2)
    assert receiver.paths().count("/post_call") == 1
    (failed,) = sim.deliveries_logged("post_call")
    assert failed.status == 500 and failed.error is None and not failed.dropped


def test_no_answer_is_logged_with_an_error_and_no_status(sim, api_key, account, company, receiver):
    closed = Receiver()
    dead = closed.url("gone")
    closed.server_close()
    urls = {"pre_call": dead, "post_call": receiver.url("slow")}
    webhooks(sim, api_key, account, company, urls)
    receiver.delay["slow"] = 1.0
    sim.set_knobs(delivery_timeout=0.2)
    place(sim, company)
    assert sim.settle(5)
    refused, slow = sim.deliveries_logged()
    assert refused.status is None and "Refused" in (refused.error or "")
    assert slow.status is None and "timed out" in (slow.error or "")


def test_failures_in_a_row_disable_the_integration_which_then_gets_nothing(
    sim, api_key, account, company, receiver, all_events
):
    path = f"/a/{account}/integrations/{all_events['id']}.json"
    sim.set_knobs(disable_after_failures=2)
    receiver.status.update(post_call=500)
    for _ in range(2):  # pre_call succeeds, post_call fails: never two failures in a row
        place(sim, company)
        assert sim.settle(5)
    assert api(sim, api_key, "GET", path).json()["state"] == "active"
    receiver.status.update(pre_call=503)
    # The last post_call failed, and now this pre_call: two in a row, so the integration is
    # disabled at once and this call's post_call and updated_call are never sent.
    place(sim, company, updated={"note": "after"})
    assert sim.settle(5)
    integration = api(sim, api_key, "GET", path).json()
    assert integration["state"] == "disabled"
    logged = [(d.event, d.status) for d in sim.deliveries_logged()]
    assert logged[-2:] == [("post_call", 500), ("pre_call", 503)] and len(logged) == 5
    assert receiver.paths()[-1] == "/pre_call" and "/updated_call" not in receiver.paths()
    count = len(receiver.got)
    place(sim, company)
    assert sim.settle(5)
    assert len(receiver.got) == count and len(sim.deliveries_logged()) == 5


def test_a_disabled_integration_gets_no_deliveries(
    sim, api_key, account, company, receiver, all_events
):
    path = f"/a/{account}/integrations/{all_events['id']}.json"
    assert api(sim, api_key, "PUT", path, {"state": "disabled"}).status_code == 200
    place(sim, company, updated={"tags": ["x"]})
    assert sim.settle(5)
    assert receiver.got == [] and sim.deliveries_logged() == []
    assert api(sim, api_key, "PUT", path, {"state": "active"}).status_code == 200
    place(sim, company)
    assert sim.settle(5)
    assert sorted(receiver.paths()) == ["/post_call", "/pre_call"]


def test_reset_forgets_the_deliveries_and_cancels_those_still_due(
    sim, company, receiver, all_events
):
    place(sim, company, post_call_delay=30)
    control(sim, "POST", "/reset")
    started = time.monotonic()
    assert sim.settle(5) and time.monotonic() - started < 1
    # pre_call may have been in flight when the reset came; post_call is never sent.
    assert receiver.paths() in ([], ["/pre_call"]) and sim.deliveries_logged() == []


def test_delivery_knobs_are_set_over_http_shown_in_stats_and_checked(sim):
    knobs = {
        "post_call_delay": 1.5,
        "delivery_timeout": 2,
        "delivery_drop_rate": 0.25,
        "delivery_seed": 3,
        "disable_after_failures": 4,
    }
    shown = control(sim, "POST", "/knobs", knobs).json()["knobs"]
    assert {name: shown[name] for name in knobs} == knobs
    assert control(sim, "GET", "/stats").json()["knobs"]["delivery_drop_rate"] == 0.25
    for bad in (
        {"delivery_drop_rate": 1.5},
        {"post_call_delay": -1},
        {"disable_after_failures": 1.5},
        {"delivery_timeout": "fast"},
    ):
        assert control(sim, "POST", "/knobs", bad).status_code == 400
    reset = control(sim, "POST", "/reset").json()["knobs"]
    assert (reset["post_call_delay"], reset["delivery_timeout"]) == (0.0, 5.0)
    assert (reset["delivery_drop_rate"], reset["disable_after_failures"]) == (0.0, 0)


def test_the_signing_key_comes_only_when_asked_for(sim, sim_data, api_key, account, company):
    created = webhooks(sim, api_key, account, company, {"post_call": "https://h.example/p"})
    path = f"/a/{account}/integrations/{created['id']}.json"
    assert "signing_key" not in api(sim, api_key, "GET", path).json()
    assert re.fullmatch(r"[0-9a-f]{32}", created["signing_key"])
    assert created["signing_key"] == sim_data.integrations[str(created["id"])]["signing_key"]


# --- calls.json -----------------------------------------------------------------------------


def calls_at(sim: SimServer, company: str, stamps: list[str]) -> list[str]:
    """Place calls starting at the given times; their ids, newest first as listed."""
    placed = [place(sim, company, start_time=s) for s in stamps]
    order = sorted(placed, key=lambda c: (datetime.fromisoformat(c["start_time"]), c["id"]))
    return [c["id"] for c in reversed(order)]


def test_offset_pages_walk_every_call_once_newest_first(sim, api_key, account, company):
    same = ago(hours=5)
    expected = calls_at(sim, company, [ago(hours=h) for h in (1, 9, 3, 7)] + [same] * 3)
    path = f"/a/{account}/calls.json"
    pages = [api(sim, api_key, "GET", path, per_page=3, page=p).json() for p in (1, 2, 3)]
    assert [c["id"] for p in pages for c in p["calls"]] == expected
    assert (pages[0]["total_pages"], pages[0]["total_records"], pages[2]["page"]) == (3, 7, 3)
    assert api(sim, api_key, "GET", path, per_page=1000).json()["per_page"] == 250  # as listings
    # A call arriving mid-walk shifts the pages: the walk sees a call twice (CALLRAIL_API.md).
    first = api(sim, api_key, "GET", path, per_page=3, page=1).json()["calls"]
    place(sim, company)
    second = api(sim, api_key, "GET", path, per_page=3, page=2).json()["calls"]
    assert second[0]["id"] == first[-1]["id"]


def test_relative_pages_follow_next_page_and_shift_when_calls_arrive(
    sim, api_key, account, company
):
    """The offset of next_page is a 0-based page index (CALLRAIL_STREAMS.md §1): a call
    arriving at the head mid-walk shifts the pages, so the walk sees a call twice."""
    same = ago(hours=4)  # four calls at one instant straddle a page boundary
    expected = calls_at(sim, company, [ago(hours=h) for h in (1, 2, 8, 9, 10)] + [same] * 4)
    url = f"{sim.base_url}/a/{account}/calls.json?relative_pagination=true&per_page=3"
    seen, pages = [], 0
    while url:
        body = requests.get(url, headers={"Authorization": f'Token token="{api_key}"'}, timeout=5)
        page = body.json()
        assert set(page) == {"calls", "per_page", "has_next_page", "next_page"}
        seen += [c["id"] for c in page["calls"]]
        assert page["has_next_page"] == (page["next_page"] is not None)
        url, pages = page["next_page"], pages + 1
        if url:
            assert url.startswith(f"{sim.base_url}/a/{account}/calls?")  # no .json
            query = parse_qs(urlsplit(url).query)
            assert query["per_page"] == ["3"] and query["relative_pagination"] == ["true"]
            assert query["offset"] == [str(pages)] and query["page"] == ["1"]
            if pages == 1:
                place(sim, company)  # a new call at the head, between two fetches
    assert seen[:3] == expected[:3] and seen[3] == expected[2]  # shifted: seen again
    assert seen[4:] == expected[3:] and pages == 4


def test_relative_paging_refuses_pages_and_foreign_offsets(sim, api_key, account):
    path = f"/a/{account}/calls.json"
    mixed = api(sim, api_key, "GET", path, relative_pagination="true", page=2)
    assert mixed.status_code == 400 and mixed.json()["error"]
    assert api(sim, api_key, "GET", path, offset="abc").status_code == 400
    bad = api(sim, api_key, "GET", path, relative_pagination="true", offset="not-ours")
    assert bad.status_code == 400 and bad.json()["error"]
    empty = api(sim, api_key, "GET", path, relative_pagination="true", per_page=999).json()
    assert empty == {"calls": [], "per_page": 250, "has_next_page": False, "next_page": None}


def test_calls_json_filters_by_company_and_dates_and_defaults_to_the_recent_7_days(
    sim, sim_data, api_key, account, company
):
    other = next(
        c["id"]
        for c in sim_data.companies(sim_data.accounts[account])
        if c["status"] == "active" and c["id"] != company
    )
    recent, old = (
        place(sim, company, start_time=ago(days=2)),
        place(sim, company, start_time=ago(days=40)),
    )
    elsewhere = place(sim, other, start_time=ago(days=3))
    path = f"/a/{account}/calls.json"

    def ids(**params: Any) -> list[str]:
        answer = api(sim, api_key, "GET", path, **params)
        assert answer.status_code == 200, answer.text
        return [c["id"] for c in answer.json()["calls"]]

    assert ids() == [recent["id"], elsewhere["id"]]
    assert ids(company_id=company) == [recent["id"]]
    since = (datetime.now(UTC) - timedelta(days=45)).date().isoformat()
    assert ids(start_date=since) == [recent["id"], elsewhere["id"], old["id"]]
    assert ids(start_date=since, end_date=ago(days=2.5)) == [elsewhere["id"], old["id"]]
    assert ids(start_date=ago(days=41), end_date=ago(days=39), company_id=company) == [old["id"]]
    # Another account's calls are not listed.
    second = sim_data.accounts_by_key[api_key][1]
    assert api(sim, api_key, "GET", f"/a/{second}/calls.json").json()["calls"] == []


@pytest.mark.parametrize(
    "params",
    [
        {"start_date": "{26_months_ago}"},
        {"start_date": "last tuesday"},
        {"end_date": "2024-13-01"},
        {"start_date": "{yesterday}", "end_date": "{month_ago}"},
    ],
)
def test_calls_json_refuses_ranges_older_than_25_months_or_unreadable(
    sim, api_key, account, params
):
    now = datetime.now(UTC)
    names = {
        "{26_months_ago}": (now - timedelta(days=26 * 31)).date().isoformat(),
        "{yesterday}": (now - timedelta(days=1)).isoformat(),
        "{month_ago}": (now - timedelta(days=30)).isoformat(),
    }
    asked = {k: names.get(v, v) for k, v in params.items()}
    answer = api(sim, api_key, "GET", f"/a/{account}/calls.json", **asked)
    assert answer.status_code == 400 and answer.json()["error"]
    year, month = divmod(now.year * 12 + now.month - 1 - 25, 12)
    oldest = now.replace(year=year, month=month + 1, day=min(now.day, 28)).date().isoformat()
    assert api(sim, api_key, "GET", f"/a/{account}/calls.json", start_date=oldest).ok


def test_calls_json_spends_the_account_s_quota_and_suffers_injected_failures(sim, api_key, account):
    path = f"/a/{account}/calls.json"
    assert api(sim, "wrong-key", "GET", path).status_code == 401
    assert api(sim, api_key, "POST", path, {}).status_code == 405
    sim.set_knobs(fail_next=["500"])
    assert api(sim, api_key, "GET", path).status_code == 500
    sim.reset()
    sim.set_knobs(rate_limits=[(2, 60)])
    spent = [api(sim, api_key, "GET", path).status_code for _ in range(3)]
    assert spent == [200, 200, 429]
    assert api(sim, api_key, "GET", f"/a/{account}/companies.json").status_code == 429  # shared
    assert {r.quota_unit for r in sim.requests_logged(path_contains="calls.json")} == {
        f"account:{account}"
    }


def test_calls_per_company_makes_up_repeatable_calls_and_leaves_companies_alone(api_key):
    plain = SimData(seed=42, keys=2, accounts_per_key=2, companies_per_account=30)
    data = SimData(
        seed=42, keys=2, accounts_per_key=2, companies_per_account=30, calls_per_company=2
    )
    account = data.accounts_by_key[api_key][0]
    assert data.companies(data.accounts[account]) == plain.companies(plain.accounts[account])
    server = SimServer(data).start()
    try:
        path = f"/a/{account}/calls.json"
        since = (datetime.now(UTC) - timedelta(days=31)).date().isoformat()
        listed = api(server, api_key, "GET", path, per_page=250, start_date=since).json()
        assert listed["total_records"] == 60
        stamps = [datetime.fromisoformat(c["start_time"]) for c in listed["calls"]]
        assert stamps == sorted(stamps, reverse=True)
        assert stamps[-1] > datetime.now(UTC) - timedelta(days=30)
        again = SimData(
            seed=42, keys=2, accounts_per_key=2, companies_per_account=30, calls_per_company=2
        )
        other = SimServer(again).start()
        try:
            again_listed = api(other, api_key, "GET", path, per_page=250, start_date=since)
            ids = {c["id"] for c in again_listed.json()["calls"]}
            assert ids == {c["id"] for c in listed["calls"]}
        finally:
            other.stop()
    finally:
        server.stop()
