"""The simulator's data: API keys, accounts, companies and integrations, made from a seed.

The same seed always gives the same keys, ids, names and timestamps. Companies of an account
are generated on first use, so a 50,000-company account costs nothing until it is listed.
"""

from __future__ import annotations

import hashlib
import random
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

TIME_ZONES = [
    ("America/New_York", -5),
    ("America/Chicago", -6),
    ("America/Denver", -7),
    ("America/Los_Angeles", -8),
    ("America/Phoenix", -7),
    ("Europe/London", 0),
]
WORDS_A = [
    "Acme",
    "Blue",
    "Summit",
    "Pioneer",
    "Harbor",
    "Golden",
    "Cedar",
    "Metro",
    "North",
    "Bright",
    "Evergreen",
    "Liberty",
    "Silver",
    "Prairie",
    "Coastal",
    "Urban",
    "Maple",
]
WORDS_B = [
    "Dental",
    "Roofing",
    "Plumbing",
    "Law",
    "Auto",
    "HVAC",
    "Realty",
    "Fitness",
    "Vet",
    "Landscaping",
    "Insurance",
    "Bakery",
    "Clinic",
    "Solar",
    "Moving",
    "Pest Control",
]
WORDS_C = ["Group", "Co", "Partners", "Services", "LLC", "Inc", "Associates", "Studio", "Pros"]
AGENCY = ["Agency", "Marketing", "Digital", "Media", "Growth"]

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


def _hex(rng: random.Random, n: int = 32) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _timestamp(rng: random.Random, offset_hours: int) -> str:
    base = datetime(2016, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(300_000_000))
    local = base.astimezone(timezone(timedelta(hours=offset_hours)))
    return local.isoformat(timespec="milliseconds")


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
            key = f"sim{k + 1}_{_hex(rng, 24)}"
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
            rng = random.Random(f"account:{self.seed}:{index}")
            account = SimAccount(
                id="ACC" + _hex(rng),
                numeric_id=rng.randrange(100_000_000, 999_999_999),
                name=name or f"{rng.choice(WORDS_A)} {rng.choice(AGENCY)} {index + 1}",
                outbound_recording_enabled=rng.random() < 0.5,
                hipaa_account=rng.random() < 0.1,
                company_count=companies,
                seed=index,
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
                    self._company(account, i) for i in range(account.company_count)
                ]
            return account._companies

    def _company(self, account: SimAccount, i: int) -> dict[str, Any]:
        rng = random.Random(f"company:{self.seed}:{account.seed}:{i}")
        tz, offset = rng.choice(TIME_ZONES)
        disabled = rng.random() < self.disabled_share
        cid = "COM" + _hex(rng)
        created = _timestamp(rng, offset)
        script_id = rng.randrange(10**8, 10**9)
        return {
            "id": cid,
            "name": f"{rng.choice(WORDS_A)} {rng.choice(WORDS_B)} {rng.choice(WORDS_C)} {i + 1}",
            "status": "disabled" if disabled else "active",
            "time_zone": tz,
            "created_at": created,
            "disabled_at": _timestamp(rng, offset) if disabled else None,
            "dni_active": rng.random() < 0.7,
            "script_url": f"//cdn.callrail.com/companies/{script_id}/{_hex(rng, 20)}/12/swap.js",
            "callscore_enabled": rng.random() < 0.3,
            "lead_scoring_enabled": rng.random() < 0.5,
            "callscribe_enabled": rng.random() < 0.3,
            "keyword_spotting_enabled": rng.random() < 0.2,
            "form_capture": rng.random() < 0.4,
            "swap_exclude_jquery": False,
            "swap_ppc_override": rng.random() < 0.2,
            "swap_landing_override": None,
            "swap_cookie_duration": 6,
            "swap_cookie_duration_unit": "months",
        }

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
