"""An account's made-up call history, compact enough for 200,000 calls over 25 months.

Only two numbers a call are kept, in arrays sorted by start: its start (epoch seconds) and its
company; everything else (id, caller, outcome, attribution, milestones...) is drawn from a
64-bit hash of the account's seed and the call's place, when the call is shown. Attribution
comes from a few dozen `PROFILES` (source, campaign, keywords, landing page, UTM, device,
milestones) whose JSON is made once, so a page of 250 calls with every field costs a few
milliseconds. A call's id names its place (`CAL` + account tag + place + check digits), so
finding a call by id needs no index.

The history ends when the data was made (`SimData.anchor`): the same seed and anchor give the
same calls, across restarts (the anchor is kept in the state file). Calls placed while running
are `SimCall`s of `calls.py`; edits and spam marks of either kind are kept beside
(`CallEdits`).
"""

from __future__ import annotations

import functools
import json
import random
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from simulator import generator

MASK = (1 << 64) - 1


def mix(value: int) -> int:
    """splitmix64: a well-spread 64-bit hash of a 64-bit number."""
    value = (value + 0x9E3779B97F4A7C15) & MASK
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & MASK
    return value ^ (value >> 31)


# --- what a call's hash decides --------------------------------------------------------------

FIRST = ["Ana", "Ben", "Chloe", "Dev", "Elena", "Femi", "Grace", "Hiro", "Ivan", "Jade", "Kofi"]
FIRST += ["Lena", "Marco", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tara", "Uma"]
LAST = ["Adams", "Brooks", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Hughes", "Ito"]
LAST += ["Jones", "Kim", "Lopez", "Miller", "Nguyen", "Okafor", "Patel", "Rossi", "Smith"]
PLACES = [
    ("Atlanta", "GA"),
    ("Austin", "TX"),
    ("Boston", "MA"),
    ("Chicago", "IL"),
    ("Denver", "CO"),
    ("Miami", "FL"),
    ("Phoenix", "AZ"),
    ("Seattle", "WA"),
    ("Portland", "OR"),
    ("Nashville", "TN"),
    ("Columbus", "OH"),
    ("Raleigh", "NC"),
]
LEADS = ["good_lead", "not_a_lead", None, None]
AGENTS = ["alex@agency.example", "blair@agency.example", "casey@agency.example", None]
TAG_NAMES = ["New Customer", "Existing Customer", "Quote", "Booked", "Spam Risk", "Follow Up"]


@dataclass(frozen=True)
class Facts:
    """What filters and roll-ups read of a call, cheap to draw from its hash."""

    answered: bool
    voicemail: bool
    outbound: bool
    duration: int
    first_call: bool
    lead_status: str | None
    profile: int
    tags: tuple[str, ...]

    @classmethod
    def of(cls, h: int) -> Facts:
        answered = (h & 0xFF) < 200
        outbound = ((h >> 8) & 0xFF) < 20
        voicemail = not answered and not outbound and (h >> 16) & 1 == 1
        duration = 30 + (h >> 17) % 870 if answered else 5 + (h >> 17) % 35
        first_call = ((h >> 27) & 0xFF) < 90
        lead = LEADS[(h >> 35) & 3] if answered else None
        tags: tuple[str, ...] = ()
        if (h >> 37) & 3 == 0:
            tags = (TAG_NAMES[(h >> 39) % len(TAG_NAMES)],)
        return cls(
            answered,
            voicemail,
            outbound,
            duration,
            first_call,
            lead,
            (h >> 43) % len(PROFILES),
            tags,
        )


# --- attribution profiles --------------------------------------------------------------------


def _profiles() -> list[dict[str, Any]]:
    rng = random.Random("call-profiles")
    kinds = [
        ("google_paid", "Google Ads", "cpc", "google", "google.com"),
        ("google_organic", "Google Organic", "organic", "google", "google.com"),
        ("bing_paid", "Bing Ads", "cpc", "bing", "bing.com"),
        ("facebook_paid", "Facebook Ads", "paid_social", "facebook", "facebook.com"),
        ("direct", "Direct", "direct", "", ""),
        ("yelp", "Yelp", "referral", "yelp", "yelp.com"),
        ("offline", "Offline: Billboard", "offline", "", ""),
    ]
    campaigns = ["Spring Promo", "Brand", "Emergency Service", "Retargeting", "Local", ""]
    keywords = ["plumber near me", "emergency repair", "best dentist", "roof quote", ""]
    pages = ["/", "/services", "/contact", "/pricing", "/book-now", "/locations/downtown"]
    devices = ["desktop", "mobile", "tablet"]
    profiles = []
    for n in range(36):
        source, name, medium, utm_source, domain = kinds[n % len(kinds)]
        campaign = rng.choice(campaigns) if medium in ("cpc", "paid_social") else ""
        keyword = rng.choice(keywords) if medium in ("cpc", "organic") else ""
        landing = f"https://www.example-client.com{rng.choice(pages)}"
        utm = {
            "utm_source": utm_source,
            "utm_medium": medium if utm_source else "",
            "utm_campaign": campaign,
            "utm_content": "",
            "utm_term": keyword,
        }
        referrer = f"https://www.{domain}/" if domain else ""
        touch = {
            "ad_position": "1t1" if medium == "cpc" else None,
            "campaign": campaign or None,
            "device": devices[n % 3],
            "keywords": keyword or None,
            "landing": landing,
            "landing_page_url_params": {k: v for k, v in utm.items() if v},
            "match_type": "e" if medium == "cpc" else None,
            "medium": medium,
            "referrer": referrer or None,
            "referrer_url_params": {},
            "session_browser": rng.choice(["Chrome", "Safari", "Firefox", "Edge"]),
            "url_utm_params": {k: v for k, v in utm.items() if v},
            "source": name,
        }
        profiles.append(
            {
                "source": name,
                "source_name": name if medium != "offline" else "Billboard Number",
                "medium": medium,
                "campaign": campaign,
                "keywords": keyword,
                "landing_page_url": landing,
                "last_requested_url": landing,
                "referring_url": referrer,
                "referrer_domain": domain,
                **utm,
                "device_type": devices[n % 3],
                "milestones": {
                    stage: {**touch, "event_date": f"@{stage}@"}
                    for stage in ("first_touch", "lead_created", "qualified", "last_touch")
                },
                "custom": "",
            }
        )
    return profiles


PROFILES = _profiles()
PROFILE_FIELDS = tuple(PROFILES[0])
"""The optional fields a profile decides."""


STAGES = ("first_touch", "lead_created", "qualified", "last_touch")


@functools.lru_cache(maxsize=256)
def fragments(names: tuple[str, ...]) -> list[list[str]]:
    """The JSON of the profile fields asked for, per profile, made once per field set: cut
    where each milestone's `event_date` goes, so a call's dates are joined in."""
    found = []
    for profile in PROFILES:
        text = json.dumps({n: profile[n] for n in names}, separators=(",", ":"))[1:-1]
        pieces = [text]
        for stage in STAGES:
            head, _, tail = pieces.pop().partition(f"@{stage}@")
            pieces += [head, tail] if _ else [head]
        found.append(pieces)
    return found


# --- an account's history --------------------------------------------------------------------


@dataclass
class History:
    """The made-up calls of one account, oldest first."""

    seed: int
    tag: int
    """8 hex digits of every call id of the account: which account a call id names."""
    companies: list[dict[str, Any]]
    """The account's companies when the history was made (a call names one by its place)."""
    starts: array = field(default_factory=lambda: array("q"))  # type: ignore[type-arg]
    company: array = field(default_factory=lambda: array("H"))  # type: ignore[type-arg]

    @classmethod
    def make(
        cls,
        seed: int,
        account_seed: int,
        companies: list[dict[str, Any]],
        per_company: int,
        days: int,
        anchor: datetime,
        kind: str = "calls",
    ) -> History:
        """`per_company` calls (or other records of a `kind`) for each company, over the
        `days` before `anchor`, mostly in the company's business hours."""
        salt = 0 if kind == "calls" else int.from_bytes(kind.encode()[:8], "big")
        account_hash = mix((seed * 1_000_003 + account_seed) ^ salt)
        history = cls(account_hash, (account_hash >> 32) & 0xFFFFFFFF, list(companies))
        label = "history" if kind == "calls" else kind
        rng = random.Random(f"{label}:{seed}:{account_seed}")
        end = int(anchor.timestamp())
        pairs: list[tuple[int, int]] = []
        span = days * 86_400
        for index, company in enumerate(companies):
            offset = int(generator.zone(company["time_zone"]).utcoffset(None).total_seconds())
            created = datetime.fromisoformat(company["created_at"]).timestamp()
            for _ in range(per_company):
                moment = end - int(rng.random() * span)
                local = (moment + offset) % 86_400
                if not 25_200 <= local <= 75_600 and rng.random() < 0.8:
                    moment -= 43_200 if local > 43_200 else -43_200  # into business hours
                moment = min(end, max(moment, int(created) + 1, end - span))
                pairs.append((moment, index))
        pairs.sort()
        history.starts = array("q", (p[0] for p in pairs))
        history.company = array("H", (p[1] for p in pairs))
        return history

    def __len__(self) -> int:
        return len(self.starts)

    def hash(self, place: int) -> int:
        return mix(self.seed ^ (place * 0x2545F4914F6CDD1D & MASK))

    def call_id(self, place: int) -> str:
        check = self.hash(place) & 0xFFFFFFFFFFFFFFFF
        return f"CAL{self.tag:08x}{place ^ (self.seed & 0xFFFFFFFF):08x}{check:016x}"

    def place_of(self, call_id: str) -> int | None:
        """The place of a call of this history named by its id; None if it names none."""
        if len(call_id) != 35 or not call_id.startswith("CAL"):
            return None
        try:
            tag, place, check = int(call_id[3:11], 16), int(call_id[11:19], 16), call_id[19:]
        except ValueError:
            return None
        place ^= self.seed & 0xFFFFFFFF
        if tag != self.tag or not 0 <= place < len(self) or self.call_id(place)[19:] != check:
            return None
        return place

    def between(self, first: float, last: float) -> tuple[int, int]:
        """Places `lo` to `hi` (excluded) of the calls started from `first` to `last`."""
        return bisect_left(self.starts, first), bisect_right(self.starts, int(last))

    def facts(self, place: int) -> Facts:
        return Facts.of(self.hash(place))

    def company_id(self, place: int) -> str:
        return str(self.companies[self.company[place]]["id"])

    def record(self, place: int) -> dict[str, Any]:
        """Every field of the call but the profile's, its times as epoch seconds (`_start`)."""
        return {**self.variable(place), **CONSTANT}

    def variable(self, place: int, wanted: frozenset[str] | None = None) -> dict[str, Any]:
        """The fields of the call that are not the same for every made-up call (`CONSTANT`):
        the default keys, and the optional ones unless `wanted` is empty."""
        h = self.hash(place)
        facts = Facts.of(h)
        company = self.companies[self.company[place]]
        h2 = mix(h)
        name = f"{FIRST[h2 % len(FIRST)]} {LAST[(h2 >> 8) % len(LAST)]}"
        city, state = PLACES[(h2 >> 16) % len(PLACES)]
        phone = f"+1{200 + (h2 >> 20) % 790}{200 + (h2 >> 30) % 800}{(h2 >> 40) % 10_000:04d}"
        tracking = generator.tracker(company["id"])
        call_id = self.call_id(place)
        recorded = facts.answered or facts.voicemail
        body: dict[str, Any] = {
            "id": call_id,
            "_start": self.starts[place],
            "_profile": facts.profile,
            "answered": facts.answered,
            "business_phone_number": tracking["business_phone_number"],
            "customer_city": city,
            "customer_country": "US",
            "customer_name": name,
            "customer_phone_number": phone,
            "customer_state": state,
            "direction": "outbound" if facts.outbound else "inbound",
            "duration": facts.duration,
            "recording": _recording(company, call_id) if recorded else None,
            "recording_duration": str(facts.duration - 3) if recorded else None,
            "recording_player": _player(call_id) if recorded else None,
            "tracking_phone_number": tracking["tracking_phone_number"],
            "voicemail": facts.voicemail,
        }
        if wanted is not None and not wanted:
            return body
        prior = (h2 >> 54) % 6 if not facts.first_call else 0
        cpc = PROFILES[facts.profile]["medium"] == "cpc"
        body.update(
            agent_email=AGENTS[(h2 >> 60) % len(AGENTS)] if facts.answered else None,
            call_type=_call_type(facts),
            company_id=company["id"],
            company_name=company["name"],
            company_time_zone=company["time_zone"],
            first_call=facts.first_call,
            prior_calls=prior,
            total_calls=prior + 1,
            lead_status=facts.lead_status,
            tags=[{"name": t, "color": "gray1"} for t in facts.tags],
            tracker_id=tracking["tracker_id"],
            person_id=f"PER{h2:016x}{h:016x}",
            timeline_url=f"https://app.callrail.com/calls/{call_id}/timeline",
            gclid=f"Cj0KCQ{h:016x}" if cpc else "",
            session_uuid=f"{h2:032x}"[:32],
            formatted_customer_name=name,
            formatted_customer_phone_number=_formatted(phone),
            formatted_duration=f"{facts.duration // 60}m {facts.duration % 60}s",
        )
        return body


CONSTANT: dict[str, Any] = {
    "note": None,
    "value": None,
    "fbclid": "",
    "msclkid": "",
    "ga": "",
    "keypad_entries": None,
    "keywords_spotted": None,
    "zip_code": None,
    "sentiment": None,
    "speaker_percent": None,
    "transcription": None,
    "call_highlights": [],
    "call_summary": None,
    "lead_score": None,
    "lead_explanation": None,
    "good_lead_call_id": None,
    "good_lead_call_time": None,
    "waveforms": None,
    "voice_assist_message": None,
}
"""Fields every made-up call has the same value of (until edited)."""


def _call_type(facts: Facts) -> str:
    if facts.outbound:
        return "outbound"
    if facts.voicemail:
        return "voicemail"
    if not facts.answered:
        return "missed"
    return "first_call" if facts.first_call else "answered"


def _recording(company: dict[str, Any], call_id: str) -> str:
    return f"https://api.callrail.com/v3/a/{company['id']}/calls/{call_id}/recording.json"


def _player(call_id: str) -> str:
    return f"https://app.callrail.com/calls/{call_id}/recording?access_key=sim"


def _formatted(phone: str) -> str:
    digits = phone[-10:]
    return f"{digits[:3]}-{digits[3:6]}-{digits[6:]}"


def milestone_dates(moment: datetime, at: str) -> list[str]:
    """The event dates of a call's milestones, in `STAGES` order: the first touch days
    before, the rest at the call (`moment`, written `at` in UTC)."""
    before = (moment - timedelta(days=3, hours=2)).isoformat(timespec="milliseconds")
    return [before, at, at, at]


def joined(pieces: list[str], moments: list[str]) -> str:
    """A fragment with its milestones' dates in place."""
    if len(pieces) == 1:
        return pieces[0]
    out = [pieces[0]]
    for moment, piece in zip(moments, pieces[1:], strict=True):
        out += [moment, piece]
    return "".join(out)
