"""The CallRail client against the simulator over real HTTP; `responses` where bytes matter."""

from __future__ import annotations

import logging
import math
import threading
import time
from datetime import UTC, datetime

import pytest
import requests
import responses
from annotated_types import Le

from callrail_sync import errors
from callrail_sync.callrail.client import CallRailClient, Timeouts, parse_retry_after, segment
from callrail_sync.callrail.models import PageMeta
from callrail_sync.callrail.pagination import PageWalker
from callrail_sync.config import Settings

BASE = "https://api.test/v3"
DEFAULT_CONCURRENCY = Settings.model_fields["page_concurrency"].default
HIGHEST_CONCURRENCY = next(
    m.le for m in Settings.model_fields["page_concurrency"].metadata if isinstance(m, Le)
)


def count_companies(client: CallRailClient, account_id: str, **kw) -> tuple[int, list[str]]:
    ids: list[str] = []
    for _page, companies in client.iter_company_pages(account_id, **kw):
        ids.extend(c["id"] for c in companies)
    return len(ids), ids


# --- operations ----------------------------------------------------------------------------


def test_lists_every_account_of_the_key(client, sim_data, api_key):
    accounts = [a for _, page in client.iter_account_pages() for a in page]
    assert [a["id"] for a in accounts] == sim_data.accounts_by_key[api_key]
    assert all(isinstance(a["hipaa_account"], bool) for a in accounts)


@pytest.mark.parametrize("records", [0, 1, 250, 251, 10_001])
def test_walks_every_page_with_the_fewest_requests(client, sim, sim_data, api_key, records):
    account = sim_data.add_account(api_key, records)
    sim.reset()
    count, ids = count_companies(client, account)
    assert count == records and len(set(ids)) == records
    assert sim.stats()["requests"] == max(1, math.ceil(records / 250))
    assert all("per_page=250" in r.query for r in sim.requests_logged())


def test_parallel_walk_reads_the_same_records_in_the_same_order(sim, sim_data, api_key):
    account = sim_data.add_account(api_key, 2_600)
    sequential = CallRailClient(api_key, base_url=sim.base_url)
    parallel = CallRailClient(api_key, base_url=sim.base_url, page_concurrency=4)
    assert count_companies(parallel, account) == count_companies(sequential, account)


class RoundTrips:
    """Counts round trips through the client's hooks: a request sent after an answer of trip
    k came back is on trip k + 1, so the count is the longest chain of waits for CallRail."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mine = threading.local()  # a request is sent and answered on one thread
        self.count = 0

    def sent(self, method: str, path: str) -> None:
        with self._lock:
            self._mine.trip = self.count + 1

    def answered(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.count = max(self.count, self._mine.trip)


def test_the_default_concurrency_reads_10_000_companies_in_two_round_trips(sim, sim_data, api_key):
    account = sim_data.add_account(api_key, 10_000)
    # Far longer than starting the 39 requests takes, even on a loaded machine: at 0.5 s, a
    # run with four test workers on two cores sent the last of the wave after the first answer
    # had come back, and counted three trips.
    sim.set_knobs(latency=2.0)
    trips = RoundTrips()
    client = CallRailClient(
        api_key,
        base_url=sim.base_url,
        before_request=trips.sent,
        after_response=trips.answered,
        page_concurrency=DEFAULT_CONCURRENCY,
    )
    assert count_companies(client, account)[0] == 10_000
    assert sim.stats()["requests"] == 40
    assert trips.count == 2


def test_the_connection_pool_keeps_a_connection_for_every_page_in_flight(
    sim, sim_data, api_key, caplog
):
    account = sim_data.add_account(api_key, HIGHEST_CONCURRENCY * 250 + 1)
    sim.set_knobs(latency=0.2)
    client = CallRailClient(api_key, base_url=sim.base_url, page_concurrency=HIGHEST_CONCURRENCY)
    with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
        assert count_companies(client, account)[0] == HIGHEST_CONCURRENCY * 250 + 1
    assert "pool is full" not in caplog.text


def test_company_filters_are_passed_upstream(client, sim, sim_data, api_key):
    account = sim_data.accounts_by_key[api_key][0]
    _, active = count_companies(client, account, status="active", sort="name", order="asc")
    everything = [c for _, page in client.iter_company_pages(account) for c in page]
    assert set(active) == {c["id"] for c in everything if c["status"] == "active"}
    queries = [r.query for r in sim.requests_logged(path_contains="companies")]
    assert any("status=active" in q and "sort=name" in q and "order=asc" in q for q in queries)
    with pytest.raises(errors.ValidationFailed):
        count_companies(client, account, order="desc")


def test_get_company(client, sim_data, api_key):
    account = sim_data.accounts_by_key[api_key][0]
    first = next(client.iter_company_pages(account))[1][0]
    assert client.get_company(account, first["id"]) == first
    with pytest.raises(errors.UpstreamNotFound):
        client.get_company(account, "COMmissing")


def test_webhook_integration_lifecycle(client, sim_data, api_key):
    account = sim_data.accounts_by_key[api_key][0]
    company = next(client.iter_company_pages(account))[1][0]["id"]
    assert client.list_webhook_integrations(account, company) == []
    made = client.create_webhook_integration(
        account, company, {"post_call_webhook": ["https://a.example/h"]}
    )
    assert made.type == "Webhooks" and made.urls_for("post_call_webhook") == ["https://a.example/h"]
    with pytest.raises(errors.InvalidRequest, match="already has a Webhooks integration"):
        client.create_webhook_integration(
            account, company, {"post_call_webhook": ["https://b.example/h"]}
        )
    changed = client.update_integration(
        account, made.id, config={"pre_call_webhook": ["https://b.example/h"]}, state="disabled"
    )
    assert changed.state == "disabled" and changed.config == {
        "pre_call_webhook": ["https://b.example/h"]
    }
    client.delete_integration(account, made.id)
    assert [i.id for i in client.list_webhook_integrations(account, company)] == [made.id]
    with pytest.raises(errors.UpstreamNotFound):
        client.update_integration(account, "424242", state="active")


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "error_type"),
    [
        ("500", errors.ServerError),
        ("503", errors.ServerError),
        ("429", errors.RateLimited),
        ("drop", errors.TransportError),
        ("timeout", errors.TransportError),
    ],
)
def test_failures_become_typed_errors(sim, api_key, failure, error_type):
    sim.set_knobs(fail_next=[failure], hang=1.0)
    client = CallRailClient(api_key, base_url=sim.base_url, timeouts=Timeouts(connect=1, read=0.3))
    with pytest.raises(error_type) as caught:
        client.get_account(sim.data.accounts_by_key[api_key][0])
    assert caught.value.retriable


def test_bad_key_is_unauthorized_and_not_retriable(sim):
    with pytest.raises(errors.Unauthorized) as caught:
        CallRailClient("not-a-key", base_url=sim.base_url).get_account("ACC1")
    assert not caught.value.retriable and "Access denied" in caught.value.message


def test_refused_connection_is_a_transport_error():
    client = CallRailClient("k", base_url="http://127.0.0.1:9/v3", timeouts=Timeouts(1, 1))
    with pytest.raises(errors.TransportError):
        client.get_account("ACC1")


def test_retry_after_is_read_from_429(sim, api_key):
    sim.set_knobs(rate_limits=[(1, 30)], send_retry_after=True)
    client = CallRailClient(api_key, base_url=sim.base_url)
    client.get_account(sim.data.accounts_by_key[api_key][0])
    with pytest.raises(errors.RateLimited) as caught:
        client.get_account(sim.data.accounts_by_key[api_key][0])
    assert 1 <= caught.value.retry_after <= 30


@pytest.mark.parametrize(
    ("status", "body", "content_type", "error_type", "message"),
    [
        (
            400,
            '{"error": "Invalid page"}',
            "application/json",
            errors.InvalidRequest,
            "Invalid page",
        ),
        (
            422,
            '{"errors": ["Url is invalid", "Type missing"]}',
            "application/json",
            errors.InvalidRequest,
            "Url is invalid; Type missing",
        ),
        (
            403,
            '{"error": "Integration Admin required"}',
            "application/json",
            errors.Forbidden,
            "Integration Admin required",
        ),
        (404, "Not Found", "text/plain", errors.UpstreamNotFound, "Not Found"),
        (502, "<html><body>Bad Gateway</body></html>", "text/html", errors.ServerError, "HTTP 502"),
        (429, '"slow down"', "application/json", errors.RateLimited, "slow down"),
        (401, "", "text/plain", errors.Unauthorized, "HTTP 401"),
        (
            405,
            '{"message": "Method Not Allowed"}',
            "application/json",
            errors.InvalidRequest,
            "Method Not Allowed",
        ),
    ],
)
@responses.activate
def test_error_bodies_are_parsed_whatever_their_shape(
    status, body, content_type, error_type, message
):
    responses.get(f"{BASE}/a/ACC1.json", body=body, status=status, content_type=content_type)
    with pytest.raises(error_type) as caught:
        CallRailClient("k", base_url=BASE).get_account("ACC1")
    assert caught.value.message.startswith(message)
    assert caught.value.status == status


NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("1.5", 1.5),
        (" 30 ", 30.0),
        ("-5", 0.0),  # never a negative wait
        ("Sat, 28 Nov 2026 12:01:00 GMT", 60.0),
        ("Sat, 28 Nov 2026 12:01:00 +0000", 60.0),
        ("Sat, 28 Nov 2026 12:01:00 -0000", 60.0),  # "no zone": taken as UTC, not a crash
        ("Sat, 28 Nov 2026 14:01:00 +0200", 60.0),
        ("Sat, 28 Nov 2026 07:01:00 -0500", 60.0),
        ("Sat, 28 Nov 2026 11:00:00 GMT", 0.0),  # already past
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_read_in_both_forms_whatever_the_zone(header, seconds):
    assert parse_retry_after(header, NOW) == seconds


@responses.activate
def test_retry_after_as_http_date_is_understood():
    responses.get(
        f"{BASE}/a/ACC1.json", status=429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
    )
    with pytest.raises(errors.RateLimited) as caught:
        CallRailClient("k", base_url=BASE).get_account("ACC1")
    assert caught.value.retry_after == 0.0


# --- the request itself --------------------------------------------------------------------


@responses.activate
def test_sends_token_auth_request_from_and_json():
    responses.post(
        f"{BASE}/a/ACC1/integrations.json",
        json={"id": 7, "type": "Webhooks", "config": {}},
        status=201,
    )
    CallRailClient("s3cret", base_url=BASE, request_from="dash").create_webhook_integration(
        "ACC1", "COM1", {"post_call_webhook": ["https://x.example"]}
    )
    sent = responses.calls[0].request
    assert sent.headers["Authorization"] == 'Token token="s3cret"'
    assert sent.headers["Request-From"] == "dash"
    assert b'"type": "Webhooks"' in sent.body and b'"company_id": "COM1"' in sent.body


@responses.activate
def test_path_segments_are_escaped():
    responses.get(f"{BASE}/a/..%2Fx/companies/a%2Fb%3Fc.json", json={"id": "COM1"})
    CallRailClient("k", base_url=BASE).get_company("../x", "a/b?c")
    assert responses.calls[0].request.url == f"{BASE}/a/..%2Fx/companies/a%2Fb%3Fc.json"
    for bad in ("", ".", ".."):
        with pytest.raises(errors.ValidationFailed):
            segment(bad)


def test_escaped_ids_stay_inside_their_path_on_a_real_server(client, sim):
    with pytest.raises(errors.UpstreamNotFound):
        client.get_company("../../a", "x")
    assert sim.requests_logged()[-1].path.startswith("/v3/a/..%2F..%2Fa/")


# --- records: plain dicts, the fields we read checked ---------------------------------------


def listed(key: str, *records: dict) -> dict:
    return {key: list(records), "page": 1, "per_page": 250, "total_pages": 1, "total_records": 1}


@responses.activate
def test_listed_companies_are_plain_dicts_as_sent_with_string_ids():
    sent = {
        "id": 470306151,
        "name": "Old Dental",
        "status": "disabled",
        "time_zone": "America/New_York",
        "created_at": "2018-02-19T13:41:00.236-05:00",
        "disabled_at": "2024-01-02T03:04:05.000-05:00",
        "brand_new_field": {"x": [1, 2]},
    }
    responses.get(f"{BASE}/a/ACC1/companies.json", json=listed("companies", sent))
    [(_page, companies)] = list(CallRailClient("k", base_url=BASE).iter_company_pages("ACC1"))
    assert [type(c) for c in companies] == [dict]
    assert companies == [{**sent, "id": "470306151"}]


@responses.activate
def test_listed_accounts_are_plain_dicts_with_unknown_fields_kept():
    sent = {"id": 470306151, "name": "Acme", "hipaa_account": True, "brand_new_field": None}
    responses.get(f"{BASE}/a.json", json=listed("accounts", sent))
    [(_page, accounts)] = list(CallRailClient("k", base_url=BASE).iter_account_pages())
    assert [type(a) for a in accounts] == [dict]
    assert accounts == [{**sent, "id": "470306151"}]


@responses.activate
def test_fields_we_read_take_their_defaults_when_missing():
    responses.get(f"{BASE}/a/ACC1/companies/COM1.json", json={"id": "COM1", "dni_active": True})
    company = CallRailClient("k", base_url=BASE).get_company("ACC1", "COM1")
    assert company == {
        "id": "COM1",
        "name": "",
        "status": "active",
        "created_at": None,
        "disabled_at": None,
        "dni_active": True,
    }


@pytest.mark.parametrize(
    "record",
    [{"name": "no id"}, {"id": None}, {"id": ""}, {"id": ["COM1"]}, {"id": "COM1", "name": 7}],
    ids=["missing id", "null id", "empty id", "list id", "name not text"],
)
@responses.activate
def test_a_record_breaking_what_we_read_is_a_server_error(record):
    responses.get(f"{BASE}/a/ACC1/companies.json", json=listed("companies", record))
    with pytest.raises(errors.ServerError) as caught:
        list(CallRailClient("k", base_url=BASE).iter_company_pages("ACC1"))
    assert caught.value.retriable and "CallRail sent a company" in caught.value.message


def test_key_is_not_in_the_repr():
    assert "s3cret" not in repr(CallRailClient("s3cret", base_url=BASE))


def test_before_request_hook_sees_every_request_and_can_refuse(sim, api_key):
    seen: list[tuple[str, str]] = []
    client = CallRailClient(
        api_key, base_url=sim.base_url, before_request=lambda m, p: seen.append((m, p))
    )
    list(client.iter_account_pages())
    assert seen == [("GET", "/a.json")]

    def refuse(method: str, path: str) -> None:
        raise errors.RateLimited("budget spent", retry_after=5)

    sim.reset()
    with pytest.raises(errors.RateLimited):
        CallRailClient(api_key, base_url=sim.base_url, before_request=refuse).get_account("ACC1")
    assert sim.stats()["requests"] == 0


def test_injected_session_is_used(sim, api_key):
    class CountingSession(requests.Session):
        calls = 0

        def request(self, *args, **kwargs):
            CountingSession.calls += 1
            return super().request(*args, **kwargs)

    client = CallRailClient(api_key, base_url=sim.base_url, session=CountingSession())
    list(client.iter_account_pages())
    assert CountingSession.calls == 1


# --- pagination edges (bad metadata) ---------------------------------------------------------


def make_pages(records: int, meta, *, per_page: int = 250, repeat_first: bool = False, holes=()):
    """A fetch function over `records` ids whose metadata is produced by `meta(page)`."""
    calls: list[int] = []

    def fetch(number: int):
        calls.append(number)
        source = 1 if repeat_first else number
        start = (source - 1) * per_page
        items = (
            []
            if number in holes
            else [{"id": f"R{i}"} for i in range(start, min(records, start + per_page))]
        )
        return items, PageMeta.model_validate(meta(number))

    return fetch, calls


def walk_ids(fetch, **kw) -> list[str]:
    return [item["id"] for page in PageWalker(fetch, per_page=250, **kw) for item in page.items]


@pytest.mark.parametrize(
    ("case", "meta"),
    [
        ("missing", lambda n: {}),
        ("zero", lambda n: {"total_pages": 0, "total_records": 0}),
        ("huge", lambda n: {"total_pages": 10**9}),
        ("huge pages, right records", lambda n: {"total_pages": 10**9, "total_records": 1_100}),
        ("wrong-low", lambda n: {"total_pages": 1}),
        ("as strings", lambda n: {"total_pages": "5", "total_records": "1100"}),
        ("garbage", lambda n: {"total_pages": "many", "total_records": None}),
    ],
)
def test_bad_total_pages_neither_loops_nor_stops_early(case, meta):
    fetch, calls = make_pages(1_100, meta)
    ids = walk_ids(fetch)
    assert ids == [f"R{i}" for i in range(1_100)], case
    assert len(calls) <= 5 + 3  # five real pages, plus at most the idle guard's look-ahead


def test_consistent_metadata_costs_exactly_the_pages():
    fetch, calls = make_pages(1_000, lambda n: {"total_pages": 4, "total_records": 1_000})
    assert len(walk_ids(fetch)) == 1_000 and calls == [1, 2, 3, 4]


def test_total_pages_growing_mid_walk_is_followed():
    fetch, calls = make_pages(
        1_100,
        lambda n: {"total_pages": 3 if n < 2 else 5, "total_records": 600 if n < 2 else 1_100},
    )
    assert len(walk_ids(fetch)) == 1_100 and calls == [1, 2, 3, 4, 5]


def test_total_pages_shrinking_mid_walk_stops_at_the_new_end():
    fetch, calls = make_pages(
        600, lambda n: {"total_pages": 5 if n < 2 else 3, "total_records": 1_100 if n < 2 else 600}
    )
    assert len(walk_ids(fetch)) == 600 and calls == [1, 2, 3]


def test_an_empty_page_before_the_last_does_not_end_the_walk():
    fetch, calls = make_pages(
        1_100, lambda n: {"total_pages": 5, "total_records": 1_100}, holes={2}
    )
    ids = walk_ids(fetch)
    assert len(ids) == 850 and calls == [1, 2, 3, 4, 5]


def test_the_same_page_served_twice_is_deduplicated_and_ends_the_walk():
    fetch, calls = make_pages(10_000, lambda n: {"total_pages": 10**6}, repeat_first=True)
    ids = walk_ids(fetch)
    assert ids == [f"R{i}" for i in range(250)] and len(calls) == 4


def test_records_shifting_between_pages_are_not_duplicated():
    def fetch(number: int):
        # Page 2 repeats the last record of page 1, as when a record is added mid-walk.
        items = {1: [{"id": "A"}, {"id": "B"}], 2: [{"id": "B"}, {"id": "C"}]}[number]
        return items, PageMeta(total_pages=2, total_records=4)

    assert [i["id"] for p in PageWalker(fetch, per_page=2) for i in p.items] == ["A", "B", "C"]


def test_max_pages_is_a_hard_stop():
    fetch, _ = make_pages(10**7, lambda n: {})
    with pytest.raises(errors.PaginationError):
        walk_ids(fetch, max_pages=20)


def test_parallel_walker_with_bad_metadata_matches_sequential():
    for meta in (
        lambda n: {},
        lambda n: {"total_pages": 10**9},
        lambda n: {"total_pages": 7, "total_records": 1_650},
    ):
        seq, _ = make_pages(1_650, meta)
        par, _ = make_pages(1_650, meta)
        assert walk_ids(par, concurrency=4) == walk_ids(seq)


@pytest.mark.parametrize("concurrency", [39, 40, HIGHEST_CONCURRENCY])
def test_the_39_pages_after_the_first_are_all_asked_for_before_any_answers(concurrency):
    """Two round trips for 40 pages, and no request past the last page however wide the window."""
    fetch_page, calls = make_pages(10_000, lambda n: {"total_pages": 40, "total_records": 10_000})
    all_39_sent = threading.Barrier(39, timeout=10)

    def fetch(number: int):
        if number > 1:
            all_39_sent.wait()  # breaks, failing the walk, unless all 39 are in flight at once
        return fetch_page(number)

    assert walk_ids(fetch, concurrency=concurrency) == [f"R{i}" for i in range(10_000)]
    assert sorted(calls) == list(range(1, 41))


def test_no_more_than_concurrency_pages_are_in_flight_and_the_window_fills():
    fetch_page, _ = make_pages(100 * 250, lambda n: {"total_pages": 100, "total_records": 25_000})
    lock = threading.Lock()
    in_flight: list[int] = [0]
    most: list[int] = [0]

    def fetch(number: int):
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        time.sleep(0.01)
        with lock:
            in_flight[0] -= 1
        return fetch_page(number)

    assert len(walk_ids(fetch, concurrency=8)) == 25_000
    assert most[0] == 8


def test_the_walker_stays_exactly_the_window_ahead_of_its_caller_to_the_end():
    """Each page handed over starts the next: the window stays full (no batches that drain),
    and the pages held never outgrow it, however slowly the caller stores them."""
    fetch, calls = make_pages(60 * 250, lambda n: {"total_pages": 60, "total_records": 15_000})
    ahead: list[int] = []
    for page in PageWalker(fetch, per_page=250, concurrency=4):
        expected = min(page.number + 4, 60)
        deadline = time.monotonic() + 5
        while max(calls) < expected and time.monotonic() < deadline:
            time.sleep(0.001)  # the caller storing the page; the fetches go on meanwhile
        time.sleep(0.005)  # and a little longer, for a page started too many to show
        ahead.append(max(calls) - page.number)
    assert ahead == [min(4, 60 - n) for n in range(1, 61)]


def test_resume_skips_stored_pages():
    fetch, calls = make_pages(1_000, lambda n: {"total_pages": 4, "total_records": 1_000})
    ids = walk_ids(fetch, skip={1, 2}, known_last=4)
    assert calls == [3, 4] and ids == [f"R{i}" for i in range(500, 1_000)]


def test_a_failing_page_in_a_parallel_batch_keeps_the_pages_beside_it():
    fetch_ok, _ = make_pages(1_500, lambda n: {"total_pages": 6, "total_records": 1_500})

    def fetch(number: int):
        if number == 3:
            raise errors.RateLimited("slow down")
        return fetch_ok(number)

    got: list[int] = []
    with pytest.raises(errors.RateLimited):
        for page in PageWalker(fetch, per_page=250, concurrency=4):
            got.append(page.number)
    assert got == [1, 2, 4, 5, 6]
