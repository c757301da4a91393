"""Input checks of the shim. Each failure is a `ValidationFailed` (400) naming the field."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from callrail_sync.callrail.webhooks import EVENT_KEYS
from callrail_sync.errors import ValidationFailed
from callrail_sync.ids import is_callrail_account_id, is_callrail_id
from callrail_sync.stores.snapshots import PageQuery

MAX_PER_PAGE = 250
"""The most records one page of a listing answers with (as CallRail's own maximum)."""
MAX_PAGE = 1_000_000
"""The last page a listing may ask for: far past any account's records, and far below where
MongoDB's 64-bit `skip` would overflow."""
TRUE, FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


def page_number(raw: str | None, name: str, default: int, maximum: int | None = None) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(f"{name} must be a whole number.") from None
    if value < 1 or (maximum is not None and value > maximum):
        bounds = f"between 1 and {maximum}" if maximum else "at least 1"
        raise ValidationFailed(f"{name} must be {bounds}.")
    return value


def flag(raw: str | None, name: str, default: bool = False) -> bool:
    if raw is None or raw == "":
        return default
    if raw.lower() in TRUE:
        return True
    if raw.lower() in FALSE:
        return False
    raise ValidationFailed(f"{name} must be true or false.")


def sort_order(
    raw: str | None, allowed: tuple[str, ...], default: str = "name"
) -> tuple[str, bool]:
    """(field, descending) from `name` or `-name`; the field must be in `allowed`."""
    value = (raw or default).strip()
    descending = value.startswith("-")
    field = value.lstrip("-")
    if field not in allowed:
        raise ValidationFailed(
            f"sort must be one of: {', '.join(allowed)} (prefix - for descending)."
        )
    return field, descending


def search_text(raw: str | None) -> str | None:
    if raw is None or raw.strip() == "":
        return None
    if len(raw) > 200:
        raise ValidationFailed("search must be at most 200 characters.")
    if any(unicodedata.category(c) == "Cc" for c in raw):
        # Names hold no control characters, and MongoDB refuses a pattern with a NUL in it.
        raise ValidationFailed("search must not contain control characters.")
    return raw.strip()


def page_query(
    query: dict[str, str], sortable: tuple[str, ...], include_disabled: bool = True
) -> PageQuery:
    """The page, size, sort and search of a listing request."""
    sort, descending = sort_order(query.get("sort"), sortable)
    page = page_number(query.get("page"), "page", 1)
    if page > MAX_PAGE:
        raise ValidationFailed(f"page must be at most {MAX_PAGE}.")
    return PageQuery(
        page=page,
        per_page=page_number(query.get("per_page"), "per_page", 10, MAX_PER_PAGE),
        sort=sort,
        descending=descending,
        search=search_text(query.get("search")),
        include_disabled=include_disabled,
    )


def callrail_id(value: Any, name: str) -> str:
    """A CallRail id: an account's (`account_id`: ACC and 32 hex, or all digits), or another
    (COM…, numeric, or our web_…: letters, digits, _ and - only)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValidationFailed(f"{name} must be a string.")
    shape = is_callrail_account_id if name == "account_id" else is_callrail_id
    if not shape(value):
        raise ValidationFailed(f"{name} is not a valid id.")
    return value


def events(value: Any) -> list[str] | None:
    if value is None:
        return None
    known = list(EVENT_KEYS)
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(e, str) and e in known for e in value)
    ):
        raise ValidationFailed(f"events must be a non-empty list of: {', '.join(known)}.")
    return list(dict.fromkeys(value))


def json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"")
    except ValueError:
        raise ValidationFailed("Request body must be valid JSON.") from None
    except RecursionError:
        # The parser recurses once per level of nesting: `[[[[…` is refused, not a crash.
        raise ValidationFailed("Request body is nested too deeply.") from None
    if not isinstance(body, dict):
        raise ValidationFailed("Request body must be a JSON object.")
    return body


def present(body: dict[str, Any], *names: str) -> bool:
    """Whether every field is there and not empty (the spec's 'required')."""
    return all(body.get(n) not in (None, "") for n in names)
