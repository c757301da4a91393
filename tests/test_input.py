"""Every input of the shim is checked: what it cannot use is a 4xx envelope, never a 500 and
never a traceback in the log (over a real uvicorn server)."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
from collections.abc import Iterable
from urllib.parse import quote, urlencode, urlsplit

import jwt
import pytest
import requests
from fastapi.routing import iter_route_contexts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api_shim.limits import MAX_BODY_BYTES
from api_shim.routes.ui import UI_PATH
from callrail_sync.job import JobError, JobType, NewJob

from .conftest import OWNER, TEST_SECRET

P = "/v1/e/callrail"
TOO_LARGE = {
    "success": False,
    "errno": 413,
    "message": "Request body is too large (at most 65536 bytes).",
}
CREATE = {
    "account_id": "ACCa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
    "company_id": "COM1",
    "webhook_url": "https://x.io/h",
}


def call(base: str, method: str, path: str, token: str | None, **kw) -> requests.Response:
    headers = kw.pop("headers", {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(method, base + path, headers=headers, timeout=30, **kw)


def assert_error(response: requests.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {"success": False, "errno": status, "message": message}


def assert_no_error_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Neither the shim nor uvicorn logged an error (a traceback) while the test ran."""
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


def exchange(base: str, head: str, body_parts: Iterable[bytes] = ()) -> tuple[int, dict]:
    """Send a request's head, then body parts, over a raw socket and read the answer. Unlike
    an HTTP client, it lets a test stop sending and still hear what the server said."""
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(head.encode("latin-1"))
        for part in body_parts:
            sock.sendall(part)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read())


def request_head(method: str, path: str, token: str, framing: str) -> str:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    )


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def padded_body(size: int) -> bytes:
    """A valid create body, padded with spaces to exactly `size` bytes."""
    body = json.dumps(CREATE).encode()
    return body + b" " * (size - len(body))


# --- the body limit -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"{P}/companies/webhook"),
        ("PUT", f"{P}/companies/webhook"),
        ("GET", f"{P}/accounts"),
        ("GET", f"{P}/jobs/job_x"),
        ("GET", "/healthz"),
        ("POST", f"{P}/nowhere"),
    ],
)
def test_a_declared_length_over_64_kb_is_refused_before_the_body_is_sent(
    shim_url, owner, token, caplog, method, path
):
    framing = f"Content-Length: {10 * 1024 * 1024}"
    # Not one byte of the body is sent: the answer comes from the head alone.
    assert exchange(shim_url, request_head(method, path, token, framing)) == (413, TOO_LARGE)
    assert_no_error_logged(caplog)


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_a_chunked_body_is_refused_as_soon_as_more_than_64_kb_has_arrived(
    shim_url, owner, token, stores, caplog, method
):
    head = request_head(method, f"{P}/companies/webhook", token, "Transfer-Encoding: chunked")
    # One chunk past the limit, and the body never ends: the server must answer anyway.
    parts = [chunk(b" " * 8192) for _ in range(MAX_BODY_BYTES // 8192 + 1)]
    assert exchange(shim_url, head, parts) == (413, TOO_LARGE)
    assert stores.jobs.recent(OWNER) == []
    assert_no_error_logged(caplog)


def test_a_body_of_exactly_64_kb_is_read_both_ways(shim_url, owner, token):
    body = padded_body(MAX_BODY_BYTES)
    declared = call(shim_url, "POST", f"{P}/companies/webhook", token, data=body)
    chunked = call(shim_url, "POST", f"{P}/companies/webhook", token, data=iter([body]))
    assert declared.status_code == 202, declared.text
    assert chunked.request.headers.get("Transfer-Encoding") == "chunked"
    assert chunked.status_code == 202, chunked.text


def test_one_byte_over_64_kb_is_refused_both_ways(shim_url, owner, token):
    body = padded_body(MAX_BODY_BYTES + 1)
    for data in (body, iter([body[:1000], body[1000:]])):
        response = call(shim_url, "POST", f"{P}/companies/webhook", token, data=data)
        assert (response.status_code, response.json()) == (413, TOO_LARGE)


# --- JSON bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 30_000 + b"]" * 30_000,
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
        b"[" * 60_000,
    ],
    ids=["arrays 30000 deep", "objects 10000 deep", "unclosed arrays 60000 deep"],
)
def test_json_nested_too_deeply_is_400_and_logs_no_traceback(shim_url, owner, token, caplog, raw):
    response = call(shim_url, "POST", f"{P}/companies/webhook", token, data=raw)
    assert_error(response, 400, "Request body is nested too deeply.")
    assert_no_error_logged(caplog)


def test_json_100000_levels_deep_is_refused_for_its_size_without_a_traceback(
    shim_url, owner, token, caplog
):
    raw = b"[" * 100_000 + b"]" * 100_000
    response = call(shim_url, "PUT", f"{P}/companies/webhook", token, data=raw)
    assert (response.status_code, response.json()) == (413, TOO_LARGE)
    assert_no_error_logged(caplog)


@pytest.mark.parametrize(
    "raw", [b"{not json", b'{"a": 1,}', b"\xff\xfe{}", b'{"a": "\xc3"}', b"1" * 5000]
)
def test_unparseable_json_is_400_valid_json(shim_url, owner, token, caplog, raw):
    response = call(shim_url, "POST", f"{P}/companies/webhook", token, data=raw)
    assert_error(response, 400, "Request body must be valid JSON.")
    assert_no_error_logged(caplog)


# --- ids and tokens are matched whole -------------------------------------------------------------


def signed(claims: dict) -> str:
    return jwt.encode({"exp": int(time.time()) + 60, **claims}, TEST_SECRET, algorithm="HS256")


@pytest.mark.parametrize(
    "account_id",
    [OWNER + "\n", OWNER + " ", " " + OWNER, OWNER + "\x00", OWNER + "0", "٠" * 24, [OWNER]],
    ids=["newline", "trailing space", "leading space", "nul", "25 hex", "arabic digits", "list"],
)
def test_a_token_account_id_that_is_not_exactly_24_hex_is_400_invalid_account_id(
    shim_url, owner, caplog, account_id
):
    token = signed({"account_id": account_id})
    assert_error(call(shim_url, "GET", f"{P}/accounts", token), 400, "INVALID_ACCOUNT_ID")
    assert_no_error_logged(caplog)


def test_a_token_account_id_in_upper_case_is_the_same_account(shim_url, owner):
    response = call(shim_url, "GET", f"{P}/accounts", signed({"account_id": OWNER.upper()}))
    assert response.status_code == 202, response.text


@pytest.mark.parametrize("mangle", ["padded", "dot appended", "space inside", "two tokens"])
def test_a_token_with_anything_added_is_401(shim_url, owner, token, mangle):
    bad = {
        "padded": token + "=",
        "dot appended": token + ".",
        "space inside": token.replace(".", ". ", 1),
        "two tokens": f"{token} {token}",
    }[mangle]
    assert_error(call(shim_url, "GET", f"{P}/accounts", bad), 401, "Invalid token.")


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("GET", "/companies?account_id=ACCa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1%0A", None, "account_id"),
        (
            "GET",
            "/companies/webhook?account_id=ACCa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1&company_id=COM1%0A",
            None,
            "company_id",
        ),
        ("POST", "/companies/webhook", {**CREATE, "company_id": "COM1\n"}, "company_id"),
        (
            "PUT",
            "/companies/webhook",
            {
                "account_id": "ACCa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1\n",
                "company_id": "COM1",
                "webhook_id": "w",
                "status": "enabled",
            },
            "account_id",
        ),
        (
            "PUT",
            "/companies/webhook",
            {
                "account_id": "ACCa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
                "company_id": "COM1",
                "webhook_id": "w\n",
                "status": "enabled",
            },
            "webhook_id",
        ),
    ],
)
def test_callrail_ids_with_a_trailing_newline_are_400(
    shim_url, owner, token, method, path, body, field
):
    response = call(shim_url, method, P + path, token, json=body)
    assert_error(response, 400, f"{field} is not a valid id.")


def test_a_job_id_is_matched_exactly(shim_url, owner, token, stores):
    job, _ = stores.jobs.create(NewJob(owner=OWNER, type=JobType.SYNC_ACCOUNTS))
    assert call(shim_url, "GET", f"{P}/jobs/{job.id}", token).status_code == 200
    for near in (f"{job.id}%0A", f"{job.id}%20", job.id.upper(), job.id[:-1]):
        assert_error(call(shim_url, "GET", f"{P}/jobs/{near}", token), 404, "Job not found.")


@pytest.mark.parametrize("path", [f"{P}/accounts/", f"{P}/jobs/job_x/", "/healthz/"])
def test_a_path_with_a_trailing_slash_is_a_404_envelope_not_a_redirect(shim_url, token, path):
    response = call(shim_url, "GET", path, token, allow_redirects=False)
    assert_error(response, 404, "Not found.")


# --- values that used to reach MongoDB or urlsplit unchecked ------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://[::1/hook",
        "https://x.io:99999/hook",
        "https://x.io:0/hook",
        "https://x.io:port/hook",
        "https://x.io/\ud800",
        "https://x.io/\x00",
        "https://x.io/a\u200bb",
    ],
    ids=[
        "broken ipv6",
        "port too big",
        "port 0",
        "port not a number",
        "lone surrogate",
        "nul",
        "zero width space",
    ],
)
def test_a_webhook_url_that_cannot_be_used_is_400(shim_url, owner, token, caplog, url):
    for method, body in (
        ("POST", {**CREATE, "webhook_url": url}),
        (
            "PUT",
            {
                "account_id": "ACCa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
                "company_id": "COM1",
                "webhook_id": "w",
                "webhook_url": url,
            },
        ),
    ):
        response = call(shim_url, method, f"{P}/companies/webhook", token, json=body)
        assert_error(response, 400, "webhook_url must be a valid http(s) URL.")
    assert_no_error_logged(caplog)


def test_an_international_webhook_url_is_accepted(shim_url, owner, token):
    body = {**CREATE, "webhook_url": "https://bücher.example:8443/hooks/callrail"}
    assert call(shim_url, "POST", f"{P}/companies/webhook", token, json=body).status_code == 202


def publish_accounts_snapshot(stores) -> None:
    stores.snapshots.begin("snap_input", OWNER, "accounts", None)
    records = [
        {"id": "ACCa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", "name": "Acme"},
        {"id": "ACCb2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2", "name": "Beta"},
    ]
    stores.snapshots.write_records("accounts", "snap_input", OWNER, records)
    stores.snapshots.publish("snap_input", 1)


@pytest.mark.parametrize("page", [str(2**62), str(10**19), "1000001"])
def test_a_page_past_the_last_one_a_listing_serves_is_400(
    shim_url, owner, token, stores, caplog, page
):
    publish_accounts_snapshot(stores)
    response = call(shim_url, "GET", f"{P}/accounts?page={page}&per_page=250", token)
    assert_error(response, 400, "page must be at most 1000000.")
    assert_no_error_logged(caplog)


def test_the_last_page_a_listing_serves_is_empty_not_an_error(shim_url, owner, token, stores):
    publish_accounts_snapshot(stores)
    response = call(shim_url, "GET", f"{P}/accounts?page=1000000&per_page=250", token)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["accounts"] == []


@pytest.mark.parametrize("search", ["%00", "a%00b", "%1B%5B", "a%C2%85b"])
def test_a_search_with_a_control_character_is_400(shim_url, owner, token, stores, search):
    publish_accounts_snapshot(stores)
    response = call(shim_url, "GET", f"{P}/accounts?search={search}", token)
    assert_error(response, 400, "search must not contain control characters.")


def test_a_search_with_other_unicode_still_finds_names(shim_url, owner, token, stores):
    publish_accounts_snapshot(stores)
    response = call(shim_url, "GET", f"{P}/accounts?search=%C2%A0ACME%C2%A0", token)
    assert response.status_code == 200, response.text
    assert [a["name"] for a in response.json()["data"]["accounts"]] == ["Acme"]


# --- fuzz: random requests at every route ---------------------------------------------------------

PARAMS = ["page", "per_page", "sort", "search", "refresh", "disabled", "wait"]
PARAMS += ["kind", "cursor", "modified_after", "filter", "limit"]
"""Query parameters the routes read (besides the ids, which every request carries)."""


def answers_in_the_envelope(path: str, status: int) -> bool:
    """All but the 200s of the routes for people and tools (docs, schema, metrics) and of
    the event streams (Server-Sent Events), and the connection page's files and redirect."""
    if status == 200 and path.endswith("/events"):
        return False  # a stream
    if path.startswith(UI_PATH.rstrip("/")) and status < 400:
        return False  # the connection page's HTML, CSS and JS, and /ui's redirect to /ui/
    return status != 200 or path.startswith(P) or path in ("/healthz", "/readyz")


def often(usual: st.SearchStrategy, wild: st.SearchStrategy) -> st.SearchStrategy:
    """Three times in four `usual`, so that requests get past the first checks to the later
    ones."""
    return st.integers(0, 3).flatmap(lambda n: usual if n < 3 else wild)


# JSON strings may carry lone surrogates (as \ud800 escapes); query text cannot (it is UTF-8).
any_text = st.text(st.characters(exclude_categories=()), max_size=30)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)
# Values a fuzzer keeps at hand because code tends to break on them (as AFL's dictionaries).
edge_numbers = st.sampled_from(["0", "-1", "1e3", "٣", str(2**31), str(2**63), str(10**19)])
numbers = st.integers(-(10**25), 10**25).map(str) | edge_numbers
urls = st.builds(
    "{}://{}{}/{}".format,
    st.sampled_from(["https", "http", "ftp", ""]),
    st.sampled_from(["x.io", "[::1]", "[::1", "bücher.example", ""]) | st.text(max_size=12),
    st.sampled_from(["", ":443", ":0", ":99999", ":port"]),
    any_text,
)
ids = st.sampled_from(["ACCa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", "COM1", "web_1", "470306151"])
query_values = often(
    ids | numbers | st.sampled_from(["1", "250", "-name", "id", "true", "no", "a"]),
    st.text(max_size=30),
)
odd_query = st.sampled_from(["&&", "=", "%", "%zz", "a=%ff", "page=%ED%A0%80", "page=1&page=x"])
odd_segment = st.sampled_from(["", ".", "..", "%", "%zz", "%ff", "%00", "%0A", "job_", "a/b"])
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_categories=("Cc",)),
    max_size=60,
).map(str.strip)
write_body = st.fixed_dictionaries(
    {"account_id": ids, "company_id": ids},
    optional={
        "webhook_url": often(st.just("https://x.io/h"), urls),
        "webhook_id": ids,
        "status": st.sampled_from(["enabled", "disabled"]),
        "events": st.just(["call.completed"]) | st.just(["sync.failed"]),
        "url": often(st.just("https://x.io/n"), urls),
        "kind": st.sampled_from(["accounts", "companies"]) | json_values,
        "reset": json_values,
        "paused": json_values,
        "interval_seconds": st.integers(-10, 10**9) | json_values,
    },
)
"""A body that passes the presence checks, so that its values get checked one by one."""


def json_bytes(value: object) -> bytes:
    return json.dumps(value).encode()


bodies = st.one_of(
    st.none(),
    st.binary(max_size=300),
    json_values.map(json_bytes),
    st.tuples(
        write_body,
        st.dictionaries(
            st.sampled_from(["webhook_url", "status", "events", "account_id", "webhook_id"]),
            json_values | urls,
            max_size=2,
        ),
    ).map(lambda pair: json_bytes({**pair[0], **pair[1]})),
    write_body.map(json_bytes),
    st.integers(1, 20_000).map(lambda n: b"[" * n + b"]" * n),
)
signed_claims = st.fixed_dictionaries(
    {"account_id": often(st.sampled_from([OWNER, OWNER.upper()]), json_values)},
    optional={"exp": often(st.just(2**40), json_values), "nbf": json_values, "x": json_values},
).map(lambda claims: jwt.encode(claims, TEST_SECRET, algorithm="HS256"))
"""Tokens that pass the signature check, so that their claims get checked."""


@st.composite
def requests_to(draw, routes: list[tuple[str, str]], job_id: str, token: str) -> dict:
    """One request: a route of the app (or a path it lacks), mostly its own method, with
    any query, headers and body. A path parameter is the id of a real job, or anything."""
    api = [route for route in routes if route[1].startswith(P)]
    method, template = draw(often(st.sampled_from(api), st.sampled_from(routes)))
    method = draw(often(st.just(method), st.sampled_from(["GET", "POST", "PUT", "DELETE"])))
    segments = st.text(max_size=40).map(lambda s: quote(s, safe="")) | odd_segment
    path = template.replace("{job_id}", draw(often(st.just(job_id), segments)))
    if draw(st.integers(0, 9)) == 0:
        path = draw(st.sampled_from([f"{P}/{draw(segments)}", f"{path}/"]))
    pairs = [("account_id", draw(ids)), ("company_id", draw(ids))]
    pairs += draw(st.lists(st.tuples(st.sampled_from(PARAMS) | st.text(max_size=8), query_values)))
    query = "&".join([urlencode(pairs, quote_via=quote)] + draw(st.lists(odd_query, max_size=2)))
    authorization = draw(
        often(
            st.just(f"Bearer {token}"),
            st.just("") | header_text | signed_claims.map(lambda t: f"Bearer {t}"),
        )
    )
    headers = {"Authorization": authorization} if authorization else {}
    headers["Content-Type"] = draw(often(st.just("application/json"), header_text))
    extra = st.from_regex(r"X-[A-Za-z0-9-]{1,20}", fullmatch=True)
    headers.update(draw(st.dictionaries(extra, header_text, max_size=3)))
    return {"method": method, "url": f"{path}?{query}", "body": draw(bodies), "headers": headers}


def send(base: str, request: dict) -> tuple[int, str, bytes]:
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request(**request)
        response = conn.getresponse()
        content_type = response.getheader("Content-Type", "")
        if content_type.startswith("text/event-stream"):  # a stream may never end: its start
            return response.status, content_type, response.read(1)
        return response.status, content_type, response.read()
    finally:
        conn.close()


def assert_envelope(status: int, payload: dict) -> None:
    if payload.get("success") is True:
        assert status in (200, 202) and set(payload) == {"success", "message", "data"}
        assert payload["message"] == ("SUCCESS" if status == 200 else "ACCEPTED")
    else:
        assert payload == {"success": False, "errno": status, "message": payload.get("message")}
        assert isinstance(payload["message"], str) and payload["message"]


@pytest.fixture
def fuzz_target(shim_url, owner, runtime, queue, stores):
    """The shim with something to find: a snapshot to page, a finished job to read."""
    from api_shim.app import create_app

    publish_accounts_snapshot(stores)
    job, _ = stores.jobs.create(NewJob(owner=OWNER, type=JobType.SYNC_ACCOUNTS))
    stores.jobs.fail(job.id, JobError(errno=502, message="CallRail error: boom"))
    app = create_app(runtime.settings, runtime=runtime, queue=queue)
    routes = [
        (method, route.path)
        for route in iter_route_contexts(app.routes)
        if route.path and route.methods
        for method in sorted(route.methods - {"HEAD"})
    ]
    return shim_url, routes, job.id


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_request_gets_a_500_and_every_answer_is_the_envelope(fuzz_target, token, caplog, data):
    base, routes, job_id = fuzz_target
    request = data.draw(requests_to(routes, job_id, token))
    status, content_type, raw = send(base, request)
    path = urlsplit(request["url"]).path
    assert status < 500 or (path == "/readyz" and status == 503), (status, raw[:300])
    if answers_in_the_envelope(path, status):
        assert content_type == "application/json", (status, content_type, raw[:300])
        assert_envelope(status, json.loads(raw))
    assert_no_error_logged(caplog)
