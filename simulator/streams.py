"""The streams beside calls (CALLRAIL_STREAMS.md): form submissions, text conversations,
trackers, tags and users of an account, made up from the seed, with what was added while
running (`POST /_sim/forms`, `POST /_sim/texts`).

Forms and conversations are made like the call history (`history.py`): a start and a company
per record, the rest drawn from a hash when shown, so thousands cost little. Trackers, tags and
users are an account's configuration: a few per company, made on first use.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from simulator import dates, generator
from simulator.data import NotFound, SimAccount, SimData
from simulator.history import FIRST, LAST, PROFILES, History, mix
from simulator.query import Query, asked_fields, paginate, param, sort_asked
from simulator.replies import error

FORM_DEFAULT = (
    "id",
    "company_id",
    "person_id",
    "form_data",
    "form_url",
    "landing_page_url",
    "referrer",
    "referring_url",
    "submitted_at",
    "first_form",
    "customer_phone_number",
    "customer_name",
    "customer_email",
    "formatted_customer_phone_number",
    "formatted_customer_name",
    "source",
    "keywords",
    "campaign",
    "medium",
)
FORM_OPTIONAL = (
    "company_name",
    "lead_status",
    "value",
    "note",
    "tags",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "form_name",
    "timeline_url",
    "milestones",
)
CONVERSATION_OPTIONAL = ("lead_status", "source")
FORM_NAMES = ["Contact Us", "Request a Quote", "Book an Appointment", "Newsletter"]
TEXTS_IN = ["Hi, are you open today?", "Can I get a quote?", "Thanks!", "What time works?"]
TEXTS_OUT = ["Yes, until 6pm.", "Sure, what's the address?", "You're welcome!", "How about 3pm?"]
ALNUM = string.ascii_letters + string.digits


def _phone(h: int) -> str:
    return f"+1{200 + h % 790}{200 + (h >> 10) % 800}{(h >> 20) % 10_000:04d}"


def _formatted(phone: str) -> str:
    return f"({phone[-10:-7]}) {phone[-7:-4]}-{phone[-4:]}"


def _name(h: int) -> str:
    return f"{FIRST[h % len(FIRST)]} {LAST[(h >> 8) % len(LAST)]}"


def _fields(query: Query, default: tuple[str, ...], optional: tuple[str, ...]) -> list[str]:
    asked = asked_fields(query, (*default, *optional))
    return [n for n in optional if n in asked]


@dataclass
class AccountStreams:
    """What one account holds beside its calls."""

    forms: History
    texts: History
    added_forms: list[dict[str, Any]] = field(default_factory=list)
    conversations: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Conversations changed or begun while running, by id: their whole record."""
    trackers: list[dict[str, Any]] | None = None
    tags: list[dict[str, Any]] | None = None
    users: list[dict[str, Any]] | None = None
    changed: bool = False
    """Whether anything was added or changed while running (then the state file keeps it)."""


class Streams:
    """Every account's form submissions, conversations, trackers, tags and users."""

    def __init__(self, data: SimData) -> None:
        self.data = data
        self._accounts: dict[str, AccountStreams] = {}
        self._pending: dict[str, Any] = {}

    def of(self, account: SimAccount) -> AccountStreams:
        with self.data.lock:
            found = self._accounts.get(account.id)
            if found is None:
                made = self.data.made_up
                found = AccountStreams(made(account, "forms", 5), made(account, "texts", 4))
                saved = self._pending.pop(account.id, None)
                if saved:
                    found.added_forms = saved["forms"]
                    found.conversations = saved["conversations"]
                    found.trackers = saved.get("trackers")
                    found.tags = saved.get("tags")
                    found.users = saved.get("users")
                    found.changed = True
                self._accounts[account.id] = found
            return found

    def dump(self) -> dict[str, Any]:
        """What was added while running, for the state file; hold `SimData.lock`."""
        made = {
            a: {
                "forms": s.added_forms,
                "conversations": s.conversations,
                "trackers": s.trackers,
                "tags": s.tags,
                "users": s.users,
            }
            for a, s in self._accounts.items()
            if s.changed
        }
        return {**self._pending, **made}

    def restore(self, state: dict[str, Any]) -> None:
        with self.data.lock:
            self._accounts.clear()
            self._pending = dict(state)

    # --- form submissions ------------------------------------------------------------------

    def form(self, made: History, place: int) -> dict[str, Any]:
        h = made.hash(place)
        company = made.companies[made.company[place]]
        profile = PROFILES[(h >> 43) % len(PROFILES)]
        name, phone = _name(mix(h)), _phone(mix(h) >> 16)
        email = f"{name.split()[0].lower()}.{(h >> 50) % 1000}@mail.example"
        form_name = FORM_NAMES[(h >> 12) % len(FORM_NAMES)]
        form_id = f"FOR{made.tag:08x}{place ^ (made.seed & 0xFFFFFFFF):08x}{h:016x}"
        anonymous = (h >> 20) % 5 == 0
        return {
            "_start": made.starts[place],
            "id": form_id,
            "company_id": company["id"],
            "person_id": "anonymous" if anonymous else f"PER{mix(h):032x}",
            "form_data": {
                "name": name,
                "email": email,
                "phone": phone,
                "message": TEXTS_IN[(h >> 30) % len(TEXTS_IN)],
            },  # fmt: skip
            "form_url": f"{profile['landing_page_url']}#{form_name.lower().replace(' ', '-')}",
            "landing_page_url": profile["landing_page_url"],
            "referrer": profile["referrer_domain"] or None,
            "referring_url": profile["referring_url"] or None,
            "submitted_at": dates.write_utc(made.starts[place]),
            "first_form": (h >> 24) % 3 != 0,
            "customer_phone_number": phone,
            "customer_name": name,
            "customer_email": email,
            "formatted_customer_phone_number": _formatted(phone),
            "formatted_customer_name": name,
            "source": profile["source"],
            "keywords": profile["keywords"] or None,
            "campaign": profile["campaign"] or None,
            "medium": profile["medium"],
            "company_name": company["name"],
            "lead_status": ["good_lead", "not_a_lead", None][(h >> 33) % 3],
            "value": None,
            "note": None,
            "tags": [],
            "utm_source": profile["utm_source"] or None,
            "utm_medium": profile["utm_medium"] or None,
            "utm_campaign": profile["utm_campaign"] or None,
            "form_name": form_name,
            "timeline_url": f"https://app.callrail.com/form_submissions/{form_id}/timeline",
            "milestones": {
                stage: {**touch, "event_date": dates.write_utc(made.starts[place])}
                for stage, touch in profile["milestones"].items()
            },
        }

    def add_form(self, company_id: str, **fields: Any) -> dict[str, Any]:
        """A form submitted now on a company; `fields` replace made-up ones."""
        with self.data.lock:
            account, company = self.data.find_company(company_id)
            found = self.of(account)
            n = len(found.added_forms)
            rng = random.Random(f"form:{self.data.seed}:{account.id}:{n}")
            now = datetime.now(UTC).timestamp()
            h = rng.getrandbits(64)
            made = History(h, h & 0xFFFFFFFF, [company])
            made.starts.append(int(now))
            made.company.append(0)
            record = self.form(made, 0)
            unknown = set(fields) - set(record) - {"_start"}
            if unknown:
                raise ValueError(f"Unknown form field: {', '.join(sorted(unknown))}")
            record.update(fields, _start=now, submitted_at=dates.write_utc(now))
            found.added_forms.append(record)
            found.changed = True
            self.data.changed()
            return {k: v for k, v in record.items() if not k.startswith("_")}

    def list_forms(self, account: SimAccount, query: Query) -> dict[str, Any]:
        span = dates.span_of(query, account.time_zone)
        optional = _fields(query, FORM_DEFAULT, FORM_OPTIONAL)
        company = param(query, "company_id")
        lead = param(query, "lead_status")
        person_lead = (param(query, "person_lead") or "").lower() == "true"
        tags = set(query.get("tags", []) + query.get("tags[]", []))
        with self.data.lock:
            found = self.of(account)
            lo, hi = found.forms.between(span.first, span.last)
            records = [self.form(found.forms, p) for p in range(lo, hi)]
            records += [f for f in found.added_forms if span.first <= f["_start"] <= span.last]
        records = [
            r
            for r in records
            if company in (None, r["company_id"])
            and lead in (None, r["lead_status"])
            and (not person_lead or r["person_id"] != "anonymous")
            and (not tags or tags & {t if isinstance(t, str) else "" for t in r["tags"]})
        ]
        sort, order = param(query, "sort") or "submitted_at", param(query, "order")
        if sort not in ("submitted_at", "form_url", "created_at"):
            raise error(400, f"Invalid sort field: {sort}")
        key = "form_url" if sort == "form_url" else "_start"
        newest_first = sort != "form_url"
        reverse = newest_first if order is None else order == "desc"
        records.sort(key=lambda r: (r[key], r["id"]), reverse=reverse)
        shown = [{k: r[k] for k in (*FORM_DEFAULT, *optional)} for r in records]
        return paginate("form_submissions", shown, query)

    # --- text conversations ------------------------------------------------------------------

    def conversation(self, made: History, place: int) -> dict[str, Any]:
        h = made.hash(place)
        company = made.companies[made.company[place]]
        tracking = generator.tracker(company["id"])
        name, phone = _name(mix(h)), _phone(mix(h) >> 16)
        last = made.starts[place]
        count = 2 + (h >> 40) % 6
        messages: list[dict[str, Any]] = []
        for n in range(count):  # newest first, a few hours apart
            at = last - n * (3_600 + (h >> (n % 40)) % 7_200)
            inbound = (n + (h & 1)) % 2 == 0
            texts = TEXTS_IN if inbound else TEXTS_OUT
            messages.append(
                {
                    "direction": "inbound" if inbound else "outbound",
                    "content": texts[(h >> (n + 3)) % len(texts)],
                    "created_at": dates.write_utc(at),
                    "type": "sms",
                    "media_urls": [],
                }
            )
        conversation_id = "".join(ALNUM[(h >> (6 * i)) % 62] for i in range(5))
        return {
            "_start": last,
            "_messages": messages,
            "id": conversation_id,
            "company_id": company["id"],
            "initial_tracker_id": tracking["tracker_id"],
            "current_tracker_id": tracking["tracker_id"],
            "customer_name": name,
            "customer_phone_number": phone,
            "initial_tracking_number": tracking["tracking_phone_number"],
            "current_tracking_number": tracking["tracking_phone_number"],
            "last_message_at": dates.write_utc(last),
            "state": "archived" if (h >> 50) % 6 == 0 else "active",
            "company_time_zone": company["time_zone"],
            "formatted_customer_name": name,
            "formatted_customer_phone_number": _formatted(phone),
            "formatted_initial_tracking_number": _formatted(tracking["tracking_phone_number"]),
            "formatted_current_tracking_number": _formatted(tracking["tracking_phone_number"]),
            "recent_messages": messages[:2],
            "lead_status": ["good_lead", "not_a_lead", None][(h >> 33) % 3],
            "source": PROFILES[(h >> 43) % len(PROFILES)]["source"],
        }

    def add_text(
        self,
        company_id: str,
        customer_phone_number: str | None = None,
        content: str = "Hello!",
        direction: str = "inbound",
    ) -> dict[str, Any]:
        """A text message now: added to the company's conversation with that number (its
        `last_message_at` moves to now), or a new conversation."""
        if direction not in ("inbound", "outbound"):
            raise ValueError("direction must be inbound or outbound")
        if not isinstance(content, str) or not content:
            raise ValueError("content must be a non-empty string")
        with self.data.lock:
            account, company = self.data.find_company(company_id)
            found = self.of(account)
            record = None
            if customer_phone_number:
                record = next(
                    (c for c in found.conversations.values()
                     if c["company_id"] == company_id
                     and c["customer_phone_number"] == customer_phone_number),
                    None,
                )  # fmt: skip
                if record is None:
                    for place in range(len(found.texts)):
                        if found.texts.company_id(place) != company_id:
                            continue
                        made = self.conversation(found.texts, place)
                        if made["customer_phone_number"] == customer_phone_number:
                            record = found.conversations[made["id"]] = made
                            break
            if record is None:
                n = len(found.conversations)
                h = random.Random(f"text:{self.data.seed}:{account.id}:{n}").getrandbits(64)
                made_one = History(h, h & 0xFFFFFFFF, [company])
                made_one.starts.append(int(datetime.now(UTC).timestamp()))
                made_one.company.append(0)
                record = self.conversation(made_one, 0)
                record["_messages"] = []
                if customer_phone_number:
                    record["customer_phone_number"] = customer_phone_number
                    record["formatted_customer_phone_number"] = _formatted(customer_phone_number)
                found.conversations[record["id"]] = record
            now = datetime.now(UTC).timestamp()
            message = {
                "direction": direction,
                "content": content,
                "created_at": dates.write_utc(now),
                "type": "sms",
                "media_urls": [],
            }
            record["_messages"] = [message, *record["_messages"]]
            record["recent_messages"] = record["_messages"][:2]
            record.update(_start=now, last_message_at=dates.write_utc(now), state="active")
            found.changed = True
            self.data.changed()
            return {k: v for k, v in record.items() if not k.startswith("_")}

    def list_texts(self, account: SimAccount, query: Query) -> dict[str, Any]:
        """`text-messages.json`: filtered by `date_range` only (on `last_message_at`)."""
        span = dates.span_of(query, account.time_zone, dates=False)
        optional = _fields(query, (), CONVERSATION_OPTIONAL)
        company = param(query, "company_id")
        search = (param(query, "search") or "").lower()
        with self.data.lock:
            found = self.of(account)
            lo, hi = found.texts.between(span.first, span.last)
            records = [self.conversation(found.texts, p) for p in range(lo, hi)]
            records = [r for r in records if r["id"] not in found.conversations]
            records += [
                r for r in found.conversations.values() if span.first <= r["_start"] <= span.last
            ]
        records = [
            r
            for r in records
            if company in (None, r["company_id"])
            and (
                not search
                or search in r["customer_name"].lower()
                or search in r["customer_phone_number"]
            )
        ]
        records.sort(key=lambda r: (r["_start"], r["id"]), reverse=True)
        hidden = {"_start", "_messages", *(n for n in CONVERSATION_OPTIONAL if n not in optional)}
        shown = [{k: v for k, v in r.items() if k not in hidden} for r in records]
        return paginate("conversations", shown, query)


# --- trackers, tags and users: an account's configuration -------------------------------------

TRACKER_OPTIONAL = ("campaign_name", "swap_targets")
ROLES = ["admin", "manager", "reporting"]
COLORS = [("gray1", "#e3e5e8"), ("blue1", "#d6e4ff"), ("green1", "#d9f2e6"), ("red1", "#ffe0e0")]


LABELS = {"session": "Website Pool", "source": "Number"}


class Configuration:
    """Trackers, tags and users of each account, made on first use from the seed."""

    def __init__(self, streams: Streams) -> None:
        self.streams = streams
        self.data = streams.data

    def trackers(self, account: SimAccount) -> list[dict[str, Any]]:
        found = self.streams.of(account)
        if found.trackers is None:
            made = []
            for company in self.data.companies(account):
                rng = random.Random(f"trackers:{self.data.seed}:{company['id']}")
                main = generator.tracker(company["id"])
                for n in range(1 + rng.randrange(3)):
                    tracker_id = main["tracker_id"] if n == 0 else "TRK" + generator.hex_id(rng)
                    number = main["tracking_phone_number"] if n == 0 else generator.phone(rng)
                    profile = PROFILES[rng.randrange(len(PROFILES))]
                    kind = "session" if n == 1 else "source"
                    created = generator.later(rng, company["created_at"])
                    disabled = n > 0 and rng.random() < 0.3
                    made.append(
                        {
                            "id": tracker_id,
                            "name": f"{profile['source']} {LABELS[kind]} {n + 1}",
                            "type": kind,
                            "status": "disabled" if disabled else "active",
                            "destination_number": main["business_phone_number"],
                            "tracking_numbers": [number],
                            "whisper_message": "Call from CallRail" if n == 0 else None,
                            "sms_enabled": n == 0,
                            "sms_supported": True,
                            "company": {"id": company["id"], "name": company["name"]},
                            "call_flow": {"type": "basic", "recording_enabled": True,
                                          "destination_number": main["business_phone_number"]},
                            "source": {"type": profile["medium"], "name": profile["source"]},
                            "created_at": created,
                            "disabled_at": generator.later(rng, created) if disabled else None,
                            "campaign_name": profile["campaign"] or None,
                            "swap_targets": [main["business_phone_number"]],
                        }
                    )  # fmt: skip
            found.trackers = made
        return found.trackers

    def tags(self, account: SimAccount) -> list[dict[str, Any]]:
        found = self.streams.of(account)
        if found.tags is None:
            rng = random.Random(f"tags:{self.data.seed}:{account.id}")
            made = []
            next_id = 990_000 + rng.randrange(1000) * 100
            companies: list[dict[str, Any] | None] = [None, *self.data.companies(account)]
            for company in companies:
                names = TAG_LEVEL_ACCOUNT if company is None else TAG_NAMES_ALL
                for name in names[: 2 if company is None else 3 + rng.randrange(3)]:
                    next_id += 1 + rng.randrange(5)
                    color, background = COLORS[rng.randrange(len(COLORS))]
                    since = company["created_at"] if company else "2018-01-01T00:00:00.000Z"
                    made.append(
                        {
                            "id": next_id,
                            "name": name,
                            "tag_level": "account" if company is None else "company",
                            "color": color,
                            "background_color": background,
                            "company_id": company["id"] if company else None,
                            "status": "disabled" if rng.random() < 0.1 else "enabled",
                            "created_at": generator.later(rng, since.replace("Z", "+00:00")),
                        }
                    )
            found.tags = made
        return found.tags

    def users(self, account: SimAccount) -> list[dict[str, Any]]:
        found = self.streams.of(account)
        if found.users is None:
            rng = random.Random(f"users:{self.data.seed}:{account.id}")
            companies = self.data.companies(account)
            made = []
            for n in range(3 + rng.randrange(6)):
                first, last = rng.choice(FIRST), rng.choice(LAST)
                role = ROLES[0] if n == 0 else rng.choice(ROLES)
                chosen = companies if role == "admin" else rng.sample(
                    companies, min(len(companies), 1 + rng.randrange(4))
                )  # fmt: skip
                made.append(
                    {
                        "email": f"{first.lower()}.{last.lower()}{n}@agency.example",
                        "id": "USR" + generator.hex_id(rng),
                        "created_at": generator.later(rng, "2019-01-01T00:00:00.000+00:00"),
                        "role": role,
                        "first_name": first,
                        "last_name": last,
                        "name": f"{first} {last}",
                        "accepted": rng.random() < 0.9,
                        "companies": [{"id": c["id"], "name": c["name"]} for c in chosen],
                    }
                )
            found.users = made
        return found.users

    # --- listings --------------------------------------------------------------------------

    def list_trackers(self, account: SimAccount, query: Query) -> dict[str, Any]:
        optional = _fields(query, (), TRACKER_OPTIONAL)
        company, kind, status = (param(query, n) for n in ("company_id", "type", "status"))
        if kind not in (None, "source", "session"):
            raise error(400, f"Invalid type: {kind}")
        if status not in (None, "active", "disabled"):
            raise error(400, f"Invalid status: {status}")
        search = (param(query, "search") or "").lower()
        with self.data.lock:
            found = [
                t
                for t in self.trackers(account)
                if company in (None, t["company"]["id"])
                and kind in (None, t["type"])
                and status in (None, t["status"])
                and search in t["name"].lower()
            ]
            found = _by_name(found, query, ("name",))
            hidden = [n for n in TRACKER_OPTIONAL if n not in optional]
            shown = [{k: v for k, v in t.items() if k not in hidden} for t in found]
        return paginate("trackers", shown, query)

    def list_tags(self, account: SimAccount, query: Query) -> dict[str, Any]:
        company, status, level = (param(query, n) for n in ("company_id", "status", "tag_level"))
        if status not in (None, "enabled", "disabled"):
            raise error(400, f"Invalid status: {status}")
        if level not in (None, "company", "account"):
            raise error(400, f"Invalid tag_level: {level}")
        if level == "account" and company:
            raise error(400, "tag_level=account cannot be combined with company_id")
        with self.data.lock:
            found = [
                dict(t)
                for t in self.tags(account)
                if (company is None or t["company_id"] in (company, None))
                and status in (None, t["status"])
                and level in (None, t["tag_level"])
            ]
        return paginate("tags", _by_name(found, query, ("name",)), query)

    def list_users(self, account: SimAccount, query: Query) -> dict[str, Any]:
        company = param(query, "company_id")
        search = (param(query, "search") or "").lower()
        with self.data.lock:
            found = [
                dict(u)
                for u in self.users(account)
                if (company is None or company in {c["id"] for c in u["companies"]})
                and (
                    not search
                    or any(search in u[n].lower() for n in ("first_name", "last_name", "email"))
                )
            ]
        return paginate("users", _by_name(found, query, ("email", "created_at")), query)

    # --- changes while running ---------------------------------------------------------------

    def delete(self, kind: str, record_id: str) -> dict[str, Any]:
        """DELETE of a tracker, tag or user (`kind` "trackers", "tags" or "users"), as CallRail
        does it: a tracker gets `status: disabled`, `disabled_at` now, and is still listed; a
        tag or user is gone from every listing. Returns the record."""
        listed = {"trackers": self.trackers, "tags": self.tags, "users": self.users}[kind]
        with self.data.lock:
            for account in self.data.accounts.values():
                records = listed(account)
                for n, record in enumerate(records):
                    if str(record["id"]) != record_id:
                        continue
                    if kind != "trackers":
                        del records[n]
                    elif record["status"] != "disabled":
                        record["status"] = "disabled"
                        record["disabled_at"] = dates.write_utc(datetime.now(UTC).timestamp())
                    self.streams.of(account).changed = True
                    self.data.changed()
                    return dict(record)
        raise NotFound(f"{kind[:-1].title()} not found: {record_id}")


TAG_NAMES_ALL = ["New Customer", "Existing Customer", "Quote", "Booked", "Spam Risk", "Follow Up"]
TAG_LEVEL_ACCOUNT = ["Agency Review", "VIP"]


def _by_name(
    records: list[dict[str, Any]], query: Query, allowed: tuple[str, ...]
) -> list[dict[str, Any]]:
    asked = sort_asked(query, allowed)
    if asked is None:
        return records
    sort, descending = asked
    return sorted(records, key=lambda r: str(r[sort]).lower(), reverse=descending)
