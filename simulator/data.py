"""The simulator's data: API keys, accounts, companies and integrations, made from a seed.

The same seed always gives the same keys, ids, names and timestamps (`generator.py` makes
them). Companies of an account are generated on first use, so a 50,000-company account costs
nothing until it is listed.
"""

from __future__ import annotations

import hashlib
import random
import threading
from dataclasses import dataclass, field
from typing import Any

from simulator import generator

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


@dataclass
class SimAccount:
    id: str
    numeric_id: int
    name: str
    outbound_recording_enabled: bool
    hipaa_account: bool
    company_count: int
    seed: int
    _companies: list[dict[str, Any]] | None = None

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
    accounts_by_key: dict[str, list[str]] = field(default_factory=dict)
    integrations: dict[str, dict[str, Any]] = field(default_factory=dict)
    read_only_keys: set[str] = field(default_factory=set)
    """Keys without the "Integration Admin" permission: writes answer 403."""
    lock: threading.RLock = field(default_factory=threading.RLock)
    _next_integration: int = 100_001

    def __post_init__(self) -> None:
        rng = random.Random(f"keys:{self.seed}")
        for k in range(self.keys):
            key = f"sim{k + 1}_{generator.hex_id(rng, 24)}"
            self.accounts_by_key[key] = []
            for _ in range(self.accounts_per_key):
                self.add_account(key, self.companies_per_account)

    @property
    def api_keys(self) -> list[str]:
        return list(self.accounts_by_key)

    def add_key(self, key: str) -> str:
        with self.lock:
            self.accounts_by_key.setdefault(key, [])
        return key

    def add_account(self, key: str, companies: int, name: str | None = None) -> str:
        """Add an account with `companies` companies under `key`; returns the account id."""
        with self.lock:
            index = len(self.accounts)
            account = SimAccount(
                **generator.account(self.seed, index, name), company_count=companies, seed=index
            )
            self.accounts[account.id] = account
            self.accounts_by_key.setdefault(key, []).append(account.id)
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

    def account_for(self, key: str, account_id: str) -> SimAccount | None:
        """The account if `key` may see it; numeric ids are accepted like the real API's."""
        for acc_id in self.accounts_by_key.get(key, []):
            account = self.accounts[acc_id]
            if account_id in (account.id, str(account.numeric_id)):
                return account
        return None

    def companies(self, account: SimAccount) -> list[dict[str, Any]]:
        with self.lock:
            if account._companies is None:
                account._companies = [
                    generator.company(self.seed, account.seed, i, self.disabled_share)
                    for i in range(account.company_count)
                ]
            return account._companies

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
            return record
