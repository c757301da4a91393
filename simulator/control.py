"""The client of a running simulator's `/_sim/*` controls (`steering.py`), over HTTP.

Tests, benchmarks and `stack` steer a simulator they did not start in-process (or one in
another process) through this one client: `SimControl(base_url)` with the simulator's
address, with or without its `/v3`.
"""

from __future__ import annotations

from typing import Any, cast

import requests


class SimControlError(RuntimeError):
    """A control answered with an error: its status and `{"error": ...}` message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"simulator control answered {status}: {message}")
        self.status = status
        self.message = message


class SimControl:
    """Steers one simulator: its knobs, stats, log, keys, accounts, companies and calls."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        self.base = url.rstrip("/").removesuffix("/v3") + "/_sim"
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        """One control: its JSON answer (None for 204); a `SimControlError` if refused."""
        answer = requests.request(
            method, f"{self.base}/{path}", json=body, params=params, timeout=self.timeout
        )
        if answer.status_code >= 400:
            try:
                message = str(answer.json()["error"])
            except (ValueError, KeyError, TypeError):
                message = answer.text
            raise SimControlError(answer.status_code, message)
        return answer.json() if answer.content else None

    # --- the simulator -----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Requests by status and the knobs in force."""
        return cast(dict[str, Any], self.call("GET", "stats"))

    def knobs(self, **values: Any) -> dict[str, Any]:
        """Turn knobs (e.g. `latency=0.1`, `rate_limits=[[1000, 3600]]`); the stats after."""
        return cast(dict[str, Any], self.call("POST", "knobs", values))

    def reset(self) -> dict[str, Any]:
        """Forget the log, counters, quota windows and deliveries; knobs back to defaults."""
        return cast(dict[str, Any], self.call("POST", "reset"))

    def log(self) -> list[dict[str, Any]]:
        """The requests the simulator answered, oldest first."""
        return cast(list[dict[str, Any]], self.call("GET", "log")["requests"])

    # --- keys and accounts -------------------------------------------------------------------

    def keys(self) -> list[str]:
        """The API keys the simulator accepts."""
        return cast(list[str], self.call("GET", "keys")["keys"])

    def share(self, key: str, accounts: list[str]) -> list[str]:
        """Give `key` (added if new) access to existing accounts; the accounts it now sees."""
        return cast(
            list[str], self.call("POST", "keys", {"key": key, "accounts": accounts})["accounts"]
        )

    def add_account(
        self,
        key: str,
        companies: int,
        calls_per_company: int | None = None,
        call_days: int | None = None,
    ) -> str:
        """A new account of `companies` companies under `key` (added if new), with its own
        made-up call history if given (e.g. 4,000 calls a company over 760 days); its id."""
        body: dict[str, Any] = {"key": key, "companies": companies}
        if calls_per_company is not None:
            body["calls_per_company"] = calls_per_company
        if call_days is not None:
            body["call_days"] = call_days
        return str(self.call("POST", "accounts", body)["id"])

    def quota(self, hourly: int = 1_000, daily: int = 10_000) -> dict[str, Any]:
        """CallRail's request quota per account (its real one by default)."""
        return self.knobs(rate_limits=[[hourly, 3600], [daily, 86400]])

    def lift_quota(self) -> dict[str, Any]:
        """No request quota at all (what speed measurements want)."""
        return self.knobs(rate_limits=[])

    # --- companies and calls -----------------------------------------------------------------

    def add_company(self, account: str, **fields: Any) -> dict[str, Any]:
        """A company added to an account (or a removed one restored, given its `id`)."""
        return cast(dict[str, Any], self.call("POST", "companies", {"account": account, **fields}))

    def change_company(self, company_id: str, **fields: Any) -> dict[str, Any]:
        """Change fields of a company; the company after."""
        return cast(dict[str, Any], self.call("PATCH", f"companies/{company_id}", fields))

    def remove_company(self, company_id: str) -> None:
        """Take a company out of its account (restore it with `add_company(id=...)`)."""
        self.call("DELETE", f"companies/{company_id}")

    def place_call(self, company_id: str, **fields: Any) -> dict[str, Any]:
        """Place a call on a company now (fields, `updated`, `drop`, `post_call_delay` as
        `SimServer.place_call` takes them); the call as calls.json shows it."""
        return cast(
            dict[str, Any], self.call("POST", "calls", {"company_id": company_id, **fields})["call"]
        )

    def edit_call(self, call_id: str, **fields: Any) -> dict[str, Any]:
        """Change a call later, as CallRail's users do (`tags`, `note`, `lead_status`, `value`,
        `customer_name`, `customer_city`); the edits it now has."""
        return cast(dict[str, Any], self.call("PATCH", f"calls/{call_id}", fields)["edits"])

    def mark_spam(self, call_id: str) -> None:
        """Mark a call spam: it vanishes from calls.json and the roll-ups, for good."""
        self.call("POST", f"calls/{call_id}/spam")

    def add_form(self, company_id: str, **fields: Any) -> dict[str, Any]:
        """A form submitted now on a company (fields as form_submissions.json shows them)."""
        return cast(
            dict[str, Any],
            self.call("POST", "forms", {"company_id": company_id, **fields})["form_submission"],
        )

    def add_text(
        self, company_id: str, customer_phone_number: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """A text now (`content`, "Hello!" unless given, and `direction`, inbound unless
        given): into that number's conversation (its `last_message_at` moves), or a new one;
        the conversation after."""
        body = {"company_id": company_id, **fields}
        if customer_phone_number:
            body["customer_phone_number"] = customer_phone_number
        return cast(dict[str, Any], self.call("POST", "texts", body)["conversation"])

    def disable_tracker(self, tracker_id: str) -> dict[str, Any]:
        """Delete a tracker as CallRail does: disabled, `disabled_at` now, still listed."""
        return cast(dict[str, Any], self.call("DELETE", f"trackers/{tracker_id}"))

    def delete_tag(self, tag_id: str | int) -> None:
        """Delete a tag: gone from tags.json."""
        self.call("DELETE", f"tags/{tag_id}")

    def delete_user(self, user_id: str) -> None:
        """Delete a user: gone from users.json."""
        self.call("DELETE", f"users/{user_id}")

    def deliveries(self, wait: bool = False, timeout: float = 10.0) -> dict[str, Any]:
        """The webhook deliveries made and how many calls still have some due; with `wait`,
        first waits up to `timeout` seconds for those due."""
        params = {"wait": 1, "timeout": timeout} if wait else {}
        return cast(dict[str, Any], self.call("GET", "deliveries", **params))
