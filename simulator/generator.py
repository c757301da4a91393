"""Makes the simulator's records from a seed: ids, names, time zones and offset timestamps.

Each record draws from its own random stream, named by the seed and the record's place, so
the same seed gives the same data however much of it is made, and in whatever order.
"""

from __future__ import annotations

import functools
import random
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
ACCOUNT_ZONES = ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"]
AGENCY = ["Agency", "Marketing", "Digital", "Media", "Growth"]


def zone(time_zone: str) -> timezone:
    """The fixed offset the data gives a time zone (UTC for one it does not know)."""
    return timezone(timedelta(hours=dict(TIME_ZONES).get(time_zone, 0)))


def hex_id(rng: random.Random, n: int = 32) -> str:
    """`n` hex digits, as in CallRail's `ACC…` and `COM…` ids."""
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


HISTORY_END = datetime(2025, 12, 1, tzinfo=UTC)
"""The latest moment a generated company timestamp takes (fixed, so the data is repeatable)."""


def timestamp(rng: random.Random, offset_hours: int) -> str:
    """A moment between 2016 and mid-2025, written with the given offset as CallRail does."""
    base = datetime(2016, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(300_000_000))
    local = base.astimezone(timezone(timedelta(hours=offset_hours)))
    return local.isoformat(timespec="milliseconds")


def later(rng: random.Random, since: str) -> str:
    """A moment after `since` and before `HISTORY_END`, written with `since`'s offset."""
    start = datetime.fromisoformat(since)
    span = max(1, int((HISTORY_END - start).total_seconds()))
    moment = start + timedelta(seconds=1 + rng.randrange(span))
    return moment.isoformat(timespec="milliseconds")


def account(seed: int, index: int, name: str | None = None) -> dict[str, Any]:
    """The fields of the `index`th account made; `name` replaces the generated one."""
    rng = random.Random(f"account:{seed}:{index}")
    return {
        "id": "ACC" + hex_id(rng),
        "numeric_id": rng.randrange(100_000_000, 999_999_999),
        "name": name or f"{rng.choice(WORDS_A)} {rng.choice(AGENCY)} {index + 1}",
        "outbound_recording_enabled": rng.random() < 0.5,
        "hipaa_account": rng.random() < 0.1,
        "time_zone": rng.choice(ACCOUNT_ZONES),
    }


def company(seed: int, account_seed: int, i: int, disabled_share: float) -> dict[str, Any]:
    """The `i`th company of the account made `account_seed`th; `disabled_share` of them are
    disabled."""
    rng = random.Random(f"company:{seed}:{account_seed}:{i}")
    tz, offset = rng.choice(TIME_ZONES)
    disabled = rng.random() < disabled_share
    cid = "COM" + hex_id(rng)
    created = timestamp(rng, offset)
    script_id = rng.randrange(10**8, 10**9)
    return {
        "id": cid,
        "name": f"{rng.choice(WORDS_A)} {rng.choice(WORDS_B)} {rng.choice(WORDS_C)} {i + 1}",
        "status": "disabled" if disabled else "active",
        "time_zone": tz,
        "created_at": created,
        "disabled_at": later(rng, created) if disabled else None,  # never before created_at
        "dni_active": rng.random() < 0.7,
        "script_url": f"//cdn.callrail.com/companies/{script_id}/{hex_id(rng, 20)}/12/swap.js",
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


FIRST_NAMES = ["Ana", "Ben", "Chloe", "Dev", "Elena", "Femi", "Grace", "Hiro", "Ivan", "Jade"]
LAST_NAMES = ["Adams", "Brooks", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Hughes", "Ito"]
CITIES = ["Atlanta", "Austin", "Boston", "Chicago", "Denver", "Miami", "Phoenix", "Seattle"]


def phone(rng: random.Random) -> str:
    """A US number in E.164, as CallRail writes them: `+14045551234`."""
    return f"+1{rng.randrange(201, 990)}{rng.randrange(200, 1000)}{rng.randrange(10_000):04d}"


@functools.lru_cache(maxsize=4096)
def tracker(company_id: str) -> dict[str, str]:
    """The main tracker (and its numbers) a company's calls come in on, made from its id
    (one dict per company, kept: do not change it)."""
    rng = random.Random(f"tracker:{company_id}")
    return {
        "tracker_id": "TRK" + hex_id(rng),
        "tracking_phone_number": phone(rng),
        "business_phone_number": phone(rng),
    }


def call(rng: random.Random) -> dict[str, Any]:
    """The caller-side fields of a call: who called, and how the call went."""
    answered = rng.random() < 0.8
    return {
        "id": "CAL" + hex_id(rng),
        "legacy_id": rng.randrange(10**9, 10**10),
        "customer_phone_number": phone(rng),
        "customer_name": f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
        "customer_city": rng.choice(CITIES),
        "answered": answered,
        "duration": rng.randrange(30, 900) if answered else rng.randrange(5, 40),
        "voicemail": not answered and rng.random() < 0.5,
    }
