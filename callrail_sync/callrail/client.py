"""HTTP client for CallRail API v3. It speaks HTTP and nothing else: no storage, no retries.

Retries and rate limiting belong to the callers (tasks and the shared budget); the client
raises typed errors from `callrail_sync.errors` so they can decide. The seam for tests and for the
budget is the constructor: an injected `requests.Session`, a base URL, and a `before_request`
hook called before every request is sent.
"""

from __future__ import annotations

import copy
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ProtocolError

from callrail_sync import errors
from callrail_sync.callrail.models import Integration, PageMeta
from callrail_sync.callrail.pagination import PageWalker, WalkedPage
from callrail_sync.callrail.records import ACCOUNT, COMPANY, AccountRecord, CompanyRecord

DEFAULT_BASE_URL = "https://api.callrail.com/v3"
MAX_PER_PAGE = 250
WEBHOOKS_TYPE = "Webhooks"
POOL_SIZE = 64
"""Connections kept per host: the most pages a walk may have in flight (PAGE_CONCURRENCY's
upper bound in callrail_sync/config.py), so that no parallel walk opens connections only to
drop them."""


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait for a connection, and for each read of the response."""

    connect: float = 5.0
    read: float = 30.0


BeforeRequest = Callable[[str, str], None]
"""Called with (method, path) just before a request is sent; may block (budget) or raise."""
AfterResponse = Callable[[str, str, int], None]
"""Called with (method, path, status) after each request; status 0 when nothing came back."""

_sessions: dict[int, requests.Session] = {}
_sessions_lock = threading.Lock()


def shared_session() -> requests.Session:
    """One pooled session per process (a forked Celery child gets its own, not the parent's)."""
    pid = os.getpid()
    with _sessions_lock:
        session = _sessions.get(pid)
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            _sessions[pid] = session
        return session


def segment(value: str | int) -> str:
    """One path segment, escaped so that an id like `../x` or `a/b` cannot leave it."""
    text = str(value)
    if text in ("", ".", ".."):
        raise errors.ValidationFailed(f"invalid CallRail id: {text!r}")
    return quote(text, safe="")


class CallRailClient:
    """CallRail v3 operations for one API key."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        session: requests.Session | None = None,
        timeouts: Timeouts = Timeouts(),
        request_from: str = "callrail-sync",
        before_request: BeforeRequest | None = None,
        after_response: AfterResponse | None = None,
        page_concurrency: int = 1,
        page_size: int = MAX_PER_PAGE,
    ) -> None:
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        self._session = session or shared_session()
        self._timeouts = timeouts
        self._request_from = request_from
        self._before_request = before_request
        self._after_response = after_response
        self.page_concurrency = page_concurrency
        self.page_size = page_size

    def pages_for(self, records: int) -> int:
        """The pages of this client's size (`page_size`) that hold `records` records."""
        return -(-records // self.page_size)

    def spending(self, first: BeforeRequest) -> CallRailClient:
        """This client, calling `first` before each request and then its own hook (a share
        of the budget taken before the budget itself)."""
        own = self._before_request

        def both(method: str, path: str) -> None:
            first(method, path)
            if own is not None:
                own(method, path)

        twin = copy.copy(self)
        twin._before_request = both
        return twin

    def __repr__(self) -> str:  # never show the key
        return f"CallRailClient(base_url={self._base_url!r})"

    # --- accounts ------------------------------------------------------------------------

    def iter_account_pages(self, **walk: Any) -> Iterator[tuple[WalkedPage, list[AccountRecord]]]:
        """Every page of `/a.json`, deduplicated, as (page, accounts as checked dicts)."""
        for page in self._walk("/a.json", "accounts", {}, **walk):
            yield page, ACCOUNT.check_all(page.items)

    def get_account(self, callrail_account_id: str) -> AccountRecord:
        return ACCOUNT.check(self.request("GET", f"/a/{segment(callrail_account_id)}.json"))

    # --- companies -----------------------------------------------------------------------

    def iter_company_pages(
        self,
        callrail_account_id: str,
        *,
        status: str | None = None,
        search: str | None = None,
        sort: str | None = None,
        order: str | None = None,
        **walk: Any,
    ) -> Iterator[tuple[WalkedPage, list[CompanyRecord]]]:
        """Every page of an account's companies, deduplicated, as (page, companies as checked
        dicts)."""
        if order and not sort:
            raise errors.ValidationFailed("order needs sort")
        params = {"status": status, "search": search, "sort": sort, "order": order}
        path = f"/a/{segment(callrail_account_id)}/companies.json"
        for page in self._walk(path, "companies", params, **walk):
            yield page, COMPANY.check_all(page.items)

    def get_company(self, callrail_account_id: str, company_id: str) -> CompanyRecord:
        path = f"/a/{segment(callrail_account_id)}/companies/{segment(company_id)}.json"
        return COMPANY.check(self.request("GET", path))

    # --- webhooks (the Webhooks integration of a company) ------------------------------

    def list_webhook_integrations(
        self, callrail_account_id: str, company_id: str
    ) -> list[Integration]:
        """The company's integrations of type Webhooks (CallRail allows one, active or not)."""
        path = f"/a/{segment(callrail_account_id)}/integrations.json"
        found: list[Integration] = []
        for page in self._walk(path, "integrations", {"company_id": company_id}):
            found.extend(
                Integration.model_validate(item)
                for item in page.items
                if item.get("type") == WEBHOOKS_TYPE
            )
        return found

    def create_webhook_integration(
        self, callrail_account_id: str, company_id: str, config: dict[str, list[str]]
    ) -> Integration:
        body = {"type": WEBHOOKS_TYPE, "company_id": company_id, "config": config}
        path = f"/a/{segment(callrail_account_id)}/integrations.json"
        return Integration.model_validate(self.request("POST", path, json_body=body))

    def update_integration(
        self,
        callrail_account_id: str,
        integration_id: str,
        *,
        config: dict[str, list[str]] | None = None,
        state: str | None = None,
    ) -> Integration:
        body = {k: v for k, v in (("config", config), ("state", state)) if v is not None}
        path = f"/a/{segment(callrail_account_id)}/integrations/{segment(integration_id)}.json"
        return Integration.model_validate(self.request("PUT", path, json_body=body))

    def delete_integration(self, callrail_account_id: str, integration_id: str) -> None:
        path = f"/a/{segment(callrail_account_id)}/integrations/{segment(integration_id)}.json"
        self.request("DELETE", path)

    # --- plumbing ------------------------------------------------------------------------

    def _walk(
        self, path: str, key: str, params: dict[str, Any], **walk: Any
    ) -> Iterator[WalkedPage]:
        query = {k: v for k, v in params.items() if v is not None}

        def fetch(number: int) -> tuple[list[dict[str, Any]], PageMeta]:
            body = self.request(
                "GET", path, params={**query, "page": number, "per_page": self.page_size}
            )
            if not isinstance(body, dict):
                raise errors.ServerError(f"unexpected response body for {key}", status=200)
            items = body.get(key) or []
            if not isinstance(items, list):
                raise errors.ServerError(f"unexpected {key} list", status=200)
            return [i for i in items if isinstance(i, dict)], PageMeta.model_validate(body)

        walk.setdefault("concurrency", self.page_concurrency)
        return iter(PageWalker(fetch, per_page=self.page_size, **walk))

    def _answered(self, method: str, path: str, status: int) -> None:
        if self._after_response is not None:
            self._after_response(method, path, status)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> Any:
        """Send one request; return the decoded JSON body (None for an empty one) or raise."""
        if self._before_request is not None:
            self._before_request(method, path)
        headers = {
            "Authorization": f'Token token="{self._api_key}"',
            "Request-From": self._request_from,
            "Accept": "application/json",
        }
        try:
            response = self._session.request(
                method,
                self._base_url + path,
                params=params,
                json=json_body,
                headers=headers,
                timeout=(self._timeouts.connect, self._timeouts.read),
            )
        except requests.RequestException as exc:
            self._answered(method, path, 0)
            if isinstance(exc, requests.Timeout):
                raise errors.TransportError(f"timed out ({type(exc).__name__})") from None
            if isinstance(exc, requests.ConnectionError):
                if _aborted(exc):
                    raise errors.ConnectionLost(f"connection lost ({type(exc).__name__})") from None
                raise errors.TransportError(f"connection failed ({type(exc).__name__})") from None
            raise errors.TransportError(f"request failed ({type(exc).__name__})") from None
        self._answered(method, path, response.status_code)
        if response.status_code >= 400:
            raise error_for(response, method, path)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise errors.ServerError(
                "CallRail sent a response that is not JSON", status=200
            ) from None


def _aborted(exc: BaseException) -> bool:
    """Whether a connection error is urllib3's "Connection aborted": the request went out on
    a connection that then closed (reset or ended) before any answer began."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ProtocolError) and "aborted" in str(item.args[0] if item.args else ""):
            return True
        todo += [*item.args, item.__cause__, item.__context__]
    return False


def error_message(response: requests.Response) -> str:
    """CallRail's own words from an error body, whatever its shape (JSON, text or HTML)."""
    text = response.text or ""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("error", "errors", "message"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, list) and value:
                return "; ".join(str(v) for v in value)
            if isinstance(value, dict) and value:
                return "; ".join(f"{k} {v}" for k, v in value.items())
    elif isinstance(body, str) and body:
        return body
    elif isinstance(body, list) and body:
        return "; ".join(str(v) for v in body)
    if "<html" in text.lower() or "<!doctype" in text.lower():
        return f"HTTP {response.status_code} ({response.reason or 'error'})"
    text = text.strip()
    return text[:300] if text else f"HTTP {response.status_code}"


def retry_after_seconds(response: requests.Response) -> float | None:
    """Retry-After in either form (RFC 9110): seconds, or an HTTP date."""
    return parse_retry_after(response.headers.get("Retry-After"), datetime.now(UTC))


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from `now`; None when absent or unreadable. A date in any zone counts,
    and one with the legacy `-0000` (read as "no zone") is taken as UTC, as GMT is meant."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def error_for(
    response: requests.Response, method: str = "GET", path: str = ""
) -> errors.CallRailError:
    """The typed error for an error response to `method path`."""
    status = response.status_code
    message = error_message(response)
    if status == 401:
        return errors.Unauthorized(message, status=status, path=path)
    if status == 403:
        # A write of integrations needs the Integration Admin permission: say so.
        writes_integration = method != "GET" and "/integrations" in path
        forbidden = errors.IntegrationForbidden if writes_integration else errors.Forbidden
        return forbidden(message, status=status, path=path)
    if status == 404:
        return errors.UpstreamNotFound(message, status=status, path=path)
    if status == 429:
        return errors.RateLimited(message, retry_after=retry_after_seconds(response), path=path)
    if status >= 500:
        return errors.ServerError(message, status=status, path=path)
    return errors.InvalidRequest(message, status=status, path=path)
