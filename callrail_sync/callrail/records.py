"""Listing records (accounts, companies): plain dicts as CallRail sent them, what we read checked.

A sync reads records by the ten thousand and stores them as they came, so a record stays the
dict decoded from the response: no model is built per record (validating a company into a model
and dumping it back cost twice the CPU of decoding its JSON; checking it costs a sixth), and
every field CallRail adds is kept untouched. Only the fields the service reads are checked, in
place:

- `id`, which must be there: older ids are numeric (`470306151`) and become strings, so that
  dedupe, lookups and store keys agree;
- `name` (searched and sorted on; `""` when missing), and for companies `status` (`"active"`
  when missing), `created_at` and `disabled_at` (null when missing): text as CallRail wrote
  it, timestamps with their offsets, not parsed.

A record that breaks these rules is a 200 whose body is not what CallRail sends: a
`ServerError`, as for any malformed response.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypedDict, TypeVar, cast

from callrail_sync import errors


class AccountRecord(TypedDict):
    """A CallRail account as listed: these fields checked, any others kept as sent."""

    id: str
    name: str


class CompanyRecord(TypedDict):
    """A CallRail company as listed: these fields checked, any others kept as sent."""

    id: str
    name: str
    status: str
    created_at: str | None
    disabled_at: str | None


R = TypeVar("R", AccountRecord, CompanyRecord)


@dataclass(frozen=True)
class RecordShape(Generic[R]):
    """How one kind of record is checked: its id, then text fields with their defaults."""

    kind: str
    """The record's kind with its article, for messages: "a company"."""
    texts: tuple[tuple[str, str | None], ...]
    """(field, default when missing); a None default also lets the field be null."""

    def check(self, item: Any) -> R:
        """`item`, checked and completed in place (it is the caller's own decoded JSON)."""
        if not isinstance(item, dict):
            raise errors.ServerError(f"CallRail sent {self.kind} that is not an object", status=200)
        record_id = item.get("id")
        if isinstance(record_id, int) and not isinstance(record_id, bool):
            item["id"] = str(record_id)
        elif not isinstance(record_id, str) or not record_id:
            raise errors.ServerError(f"CallRail sent {self.kind} without an id", status=200)
        for name, default in self.texts:
            value = item.setdefault(name, default)
            if not isinstance(value, str) and (value is not None or default is not None):
                raise errors.ServerError(
                    f"CallRail sent {self.kind} ({item['id']}) whose {name} is not text",
                    status=200,
                )
        return cast(R, item)

    def check_all(self, items: list[dict[str, Any]]) -> list[R]:
        return [self.check(item) for item in items]


ACCOUNT = RecordShape[AccountRecord]("an account", (("name", ""),))
COMPANY = RecordShape[CompanyRecord](
    "a company",
    (("name", ""), ("status", "active"), ("created_at", None), ("disabled_at", None)),
)
