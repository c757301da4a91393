"""The simulator's data: API keys, accounts, companies and integrations, made from a seed.

The same seed always gives the same keys, ids, names and timestamps (`generator.py` makes
them). Companies of an account are generated on first use, so a 50,000-company account costs
nothing until it is listed. While the simulator runs, companies can be added, changed, removed
and restored, so that a client's change tracking can be tested end to end.
"""

from __future__ import annotations

import hashlib
import random
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from simulator import generator
from simulator.history import History

WEBHOOK_KEYS = (
    "pre_call_webhook",
    "answered_call_webhook",
    "post_call_webhook",
    "updated_call_webhook",
    "post_outbound_call_webhook",
    "updated_outbound_call_webhook",
    "sms_received_webhook",
    "sms_sent_webhook",
    "form_captured_webhook",
)


class NotFound(LookupError):
    """Raised when an id names no account or company the simulator holds."""


class Conflict(ValueError):
    """Raised when a company to add takes the id of one that exists or was removed."""


@dataclass
class SimAccount:
    id: str
    numeric_id: int
    name: str
    outbound_recording_enabled: bool
    hipaa_account: bool
    company_count: int
    seed: int
    added_companies: int = 0
    calls_per_company: int | None = None
    """Made-up calls per company (None: the data's `calls_per_company`)."""
    call_days: int | None = None
    time_zone: str = "America/New_York"
    """The account's time zone: dates are read in it when a request names none. No endpoint
    shows it (CallRail's accounts carry no time zone)."""
    _companies: list[dict[str, Any]] | None = None
    _history: Any = None

    def public(self, fields: set[str]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "outbound_recording_enabled": self.outbound_recording_enabled,
            "hipaa_account": self.hipaa_account,
        }
        if "numeric_id" in fields:
            body["numeric_id"] = self.numeric_id
        return body


@dataclass
class SimData:
    """Keys → accounts → companies, plus the Webhooks integrations created through the API."""

    seed: int = 1
    keys: int = 1
    accounts_per_key: int = 2
    companies_per_account: int = 30
    disabled_share: float = 0.1
    accounts: dict[str, SimAccount] = field(default_factory=dict)
    calls_per_company: int = 0
    """Calls made up for each active company of an account when its calls are first asked
    for, spread over the `call_days` before `anchor` (`history.py`); 0: calls exist only once
    placed. `add_account` may give an account its own."""
    call_days: int = 29
    anchor: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    """When the data was made: the made-up history ends there (kept in the state file, so a
    restart shows the same calls)."""
    accounts_by_key: dict[str, list[str]] = field(default_factory=dict)
    integrations: dict[str, dict[str, Any]] = field(default_factory=dict)
    read_only_keys: set[str] = field(default_factory=set)
    """Keys without the "Integration Admin" permission: writes answer 403."""
    lock: threading.RLock = field(default_factory=threading.RLock)
    _next_integration: int = 100_001
    _removed: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    """Removed companies by id: (account id, the record), for `restore_company`."""
    version: int = 0
    """How many changes were made since the data was made or loaded (`changed`)."""

    def __post_init__(self) -> None:
        rng = random.Random(f"keys:{self.seed}")
        for k in range(self.keys):
            key = f"sim{k + 1}_{generator.hex_id(rng, 24)}"
            self.accounts_by_key[key] = []
            for _ in range(self.accounts_per_key):
                self.add_account(key, self.companies_per_account)

    def changed(self) -> None:
        """Note a change to what the data holds, so the state file (`state.py`) follows."""
        with self.lock:
            self.version += 1

    # --- the state file (state.py) -------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """What the data was made from: a state file made from other settings is not loaded."""
        return {
            "seed": self.seed,
            "keys": self.keys,
            "accounts_per_key": self.accounts_per_key,
            "companies_per_account": self.companies_per_account,
            "disabled_share": self.disabled_share,
            "calls_per_company": self.calls_per_company,
            "call_days": self.call_days,
        }

    def dump(self) -> dict[str, Any]:
        """Everything that can change while the simulator runs, as JSON values; hold `lock`."""
        accounts = []
        for account in self.accounts.values():
            fields = {k: v for k, v in vars(account).items() if not k.startswith("_")}
            accounts.append({**fields, "companies": account._companies})
        return {
            "accounts": accounts,
            "accounts_by_key": self.accounts_by_key,
            "read_only_keys": sorted(self.read_only_keys),
            "integrations": self.integrations,
            "next_integration": self._next_integration,
            "removed": {cid: list(place) for cid, place in self._removed.items()},
            "anchor": self.anchor.isoformat(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Take back what `dump` wrote (in place of what the seed made)."""
        with self.lock:
            self.accounts = {}
            for fields in state["accounts"]:
                companies = fields.pop("companies")
                account = SimAccount(**fields)
                account._companies = companies
                self.accounts[account.id] = account
            self.accounts_by_key = {k: list(v) for k, v in state["accounts_by_key"].items()}
            self.read_only_keys = set(state["read_only_keys"])
            self.integrations = state["integrations"]
            self._next_integration = int(state["next_integration"])
            self._removed = {cid: (acc, rec) for cid, (acc, rec) in state["removed"].items()}
            self.anchor = datetime.fromisoformat(state["anchor"])

    @property
    def api_keys(self) -> list[str]:
        return list(self.accounts_by_key)

    def add_key(self, key: str) -> str:
        with self.lock:
            if key not in self.accounts_by_key:
                self.accounts_by_key[key] = []
                self.changed()
        return key

    def add_account(
        self,
        key: str,
        companies: int,
        name: str | None = None,
        calls_per_company: int | None = None,
        call_days: int | None = None,
    ) -> str:
        """Add an account with `companies` companies under `key` (and, if given, its own
        made-up call history); returns the account id."""
        if calls_per_company is not None and not 0 <= calls_per_company <= 1_000_000:
            raise ValueError("calls_per_company must be from 0 to 1,000,000")
        if call_days is not None and not 1 <= call_days <= 800:
            raise ValueError("call_days must be from 1 to 800")
        with self.lock:
            index = len(self.accounts)
            account = SimAccount(
                **generator.account(self.seed, index, name),
                company_count=companies,
                seed=index,
                calls_per_company=calls_per_company,
                call_days=call_days,
            )
            self.accounts[account.id] = account
            self.accounts_by_key.setdefault(key, []).append(account.id)
            self.changed()
            return account.id

    def account(self, account_id: str) -> SimAccount:
        """The account with this id (`ACC…` or numeric), whichever keys may see it."""
        with self.lock:
            for account in self.accounts.values():
                if account_id in (account.id, str(account.numeric_id)):
                    return account
        raise NotFound(f"Account not found: {account_id}")

    def share_account(self, key: str, account_id: str) -> None:
        """Let `key` see an existing account too, as when two users or apps of one CallRail
        account each hold a key; adds the key if it is new."""
        with self.lock:
            account = self.account(account_id)
            visible = self.accounts_by_key.setdefault(key, [])
            if account.id not in visible:
                visible.append(account.id)
                self.changed()

    def account_for(self, key: str, account_id: str) -> SimAccount | None:
        """The account if `key` may see it; numeric ids are accepted like the real API's."""
        for acc_id in self.accounts_by_key.get(key, []):
            account = self.accounts[acc_id]
            if account_id in (account.id, str(account.numeric_id)):
                return account
        return None

    def companies(self, account: SimAccount) -> list[dict[str, Any]]:
        """The account's companies: the live list the listings serve, in their default order.

        Editing it (or a record in it) changes what the API answers next; hold `lock` around
        edits made while requests are in flight.
        """
        with self.lock:
            if account._companies is None:
                account._companies = [
                    generator.company(self.seed, account.seed, i, self.disabled_share)
                    for i in range(account.company_count)
                ]
            return account._companies

    def history(self, account: SimAccount) -> History:
        """The account's made-up calls, made on first use (from the companies it had then)."""
        with self.lock:
            if account._history is None:
                account._history = self.made_up(account)
            history: History = account._history
            return history

    def made_up(self, account: SimAccount, kind: str = "calls", share: int = 1) -> History:
        """A made-up history of the account's companies now: its calls, or its records of
        another `kind`, 1/`share` as many as calls, over the same days."""
        per = account.calls_per_company
        calls = (self.calls_per_company if per is None else per) // share
        days = account.call_days or self.call_days
        companies = self.companies(account)
        return History.make(self.seed, account.seed, companies, calls, days, self.anchor, kind)

    def add_company(self, account_id: str, **fields: Any) -> dict[str, Any]:
        """Create an active company in an account, made now: realistic fields are generated,
        then `fields` (an `id` among them) are applied. Returns the live record, listed last."""
        with self.lock:
            account = self.account(account_id)
            if "id" in fields:
                _check("id", fields["id"])
                if fields["id"] in self._removed or self._place(fields["id"]):
                    raise Conflict(f"Company {fields['id']} exists or was removed: restore it")
            companies = self.companies(account)
            index = account.company_count + account.added_companies
            company = generator.company(self.seed, account.seed, index, self.disabled_share)
            company.update(status="active", disabled_at=None)
            _change(company, fields)
            if "created_at" not in fields:
                company["created_at"] = _now_in(company["time_zone"])
            account.added_companies += 1
            companies.append(company)
            self.changed()
            return company

    def update_company(self, company_id: str, **fields: Any) -> dict[str, Any]:
        """Change fields of a listed company in place; returns the live record.

        Any field may change but `id`. `status: disabled` without `disabled_at` stamps
        `disabled_at` now (unless already disabled); `status: active` clears it.
        """
        with self.lock:
            if fields.get("id", company_id) != company_id:
                raise ValueError("A company's id cannot change")
            account, index = self._live(company_id)
            company = self.companies(account)[index]
            _change(company, fields)
            self.changed()
            return company

    def remove_company(self, company_id: str) -> None:
        """Take a company out of its account: no longer listed, and fetching it is a 404.

        Not CallRail's soft delete (that is `status: disabled`) but a company gone from the
        account; it is remembered, so `restore_company` can bring it back.
        """
        with self.lock:
            account, index = self._live(company_id)
            self._removed[company_id] = (account.id, self.companies(account).pop(index))
            self.changed()

    def restore_company(self, company_id: str, **fields: Any) -> dict[str, Any]:
        """Bring a removed company back, same id, listed last, with `fields` changed."""
        with self.lock:
            if company_id not in self._removed:
                raise NotFound(f"No removed company {company_id}")
            if fields.get("id", company_id) != company_id:
                raise ValueError("A company's id cannot change")
            account_id, company = self._removed[company_id]
            _change(company, fields)
            del self._removed[company_id]
            self.companies(self.accounts[account_id]).append(company)
            self.changed()
            return company

    def removed_from(self, company_id: str) -> str | None:
        """The account a removed company belonged to; None if it was not removed."""
        with self.lock:
            removed = self._removed.get(company_id)
            return removed[0] if removed else None

    def find_company(self, company_id: str) -> tuple[SimAccount, dict[str, Any]]:
        """The account listing a company and its live record, making any account's companies
        not made yet; NotFound for an unknown or removed company."""
        with self.lock:
            for account in self.accounts.values():
                for company in self.companies(account):
                    if company["id"] == company_id:
                        return account, company
        raise NotFound(f"Company not found: {company_id}")

    def _live(self, company_id: str) -> tuple[SimAccount, int]:
        place = self._place(company_id)
        if place is None:
            raise NotFound(f"Company not found: {company_id}")
        return place

    def _place(self, company_id: str) -> tuple[SimAccount, int] | None:
        """The account listing a company, and the company's index in its list."""
        for account in self.accounts.values():
            # Ungenerated accounts are skipped: their ids have not been seen yet.
            for index, company in enumerate(account._companies or ()):
                if company["id"] == company_id:
                    return account, index
        return None

    def new_integration(
        self, account_id: str, company_id: str, config: dict[str, list[str]], now: str
    ) -> dict[str, Any]:
        with self.lock:
            iid = self._next_integration
            self._next_integration += 1
            signing = hashlib.sha256(f"{self.seed}:{iid}".encode()).hexdigest()[:32]
            record = {
                "id": iid,
                "type": "Webhooks",
                "account_id": account_id,
                "company_id": company_id,
                "state": "active",
                "config": config,
                "signing_key": signing,
                "created_at": now,
                "updated_at": now,
            }
            self.integrations[str(iid)] = record
            self.changed()
            return record


def _now_in(time_zone: str) -> str:
    """Now, written with the offset the data gives `time_zone` (UTC if it gives none)."""
    return datetime.now(generator.zone(time_zone)).isoformat(timespec="milliseconds")


def _change(company: dict[str, Any], fields: dict[str, Any]) -> None:
    """Apply field changes to a company as CallRail would show them; a bad value is a
    ValueError, raised before anything changes."""
    for name, value in fields.items():
        _check(name, value)
    was_disabled = company["status"] == "disabled" and company["disabled_at"] is not None
    company.update(fields)
    if "disabled_at" in fields:
        return
    if company["status"] == "disabled" and not was_disabled:
        company["disabled_at"] = _now_in(company["time_zone"])
    elif company["status"] == "active":
        company["disabled_at"] = None


def _check(name: str, value: Any) -> None:
    if name in ("id", "name", "time_zone") and not (isinstance(value, str) and value):
        raise ValueError(f"{name} must be a non-empty string")
    if name == "status" and value not in ("active", "disabled"):
        raise ValueError("status must be active or disabled")
    timed = name == "created_at" or (name == "disabled_at" and value is not None)
    if timed and not stamped(value):
        raise ValueError(f"{name} must be an ISO 8601 timestamp with an offset")


def stamped(value: Any) -> bool:
    """Whether a value is an ISO 8601 timestamp with an offset."""
    try:
        return datetime.fromisoformat(value).utcoffset() is not None
    except (TypeError, ValueError):
        return False
