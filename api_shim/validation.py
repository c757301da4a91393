"""Input checks of the shim. Each failure is an ApiError(400) whose message names the field."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from api_shim.envelope import ApiError
from worker.callrail.webhooks import EVENT_KEYS

CALLRAIL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_PER_PAGE = 250
TRUE, FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


def page_number(raw: str | None, name: str, default: int, maximum: int | None = None) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number.") from None
    if value < 1 or (maximum is not None and value > maximum):
        bounds = f"between 1 and {maximum}" if maximum else "at least 1"
        raise ApiError(400, f"{name} must be {bounds}.")
    return value


def flag(raw: str | None, name: str, default: bool = False) -> bool:
    if raw is None or raw == "":
        return default
    if raw.lower() in TRUE:
        return True
    if raw.lower() in FALSE:
        return False
    raise ApiError(400, f"{name} must be true or false.")


def sort_order(raw: str | None, allowed: list[str], default: str = "name") -> tuple[str, bool]:
    """(field, descending) from `name` or `-name`; the field must be in `allowed`."""
    value = (raw or default).strip()
    descending = value.startswith("-")
    field = value.lstrip("-")
    if field not in allowed:
        raise ApiError(400, f"sort must be one of: {', '.join(allowed)} (prefix - for descending).")
    return field, descending


def search_text(raw: str | None) -> str | None:
    if raw is None or raw.strip() == "":
        return None
    if len(raw) > 200:
        raise ApiError(400, "search must be at most 200 characters.")
    return raw.strip()


def callrail_id(value: Any, name: str) -> str:
    """A CallRail id (ACC…, COM…, numeric, or our web_…): letters, digits, _ and - only."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ApiError(400, f"{name} must be a string.")
    if not CALLRAIL_ID.match(value):
        raise ApiError(400, f"{name} is not a valid id.")
    return value


def http_url(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ApiError(400, f"{name} must be a string.")
    url = value.strip()
    parts = urlsplit(url)
    if (
        len(url) > 2048
        or parts.scheme.lower() not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() for c in url)
    ):
        raise ApiError(400, f"{name} must be a valid http(s) URL.")
    return url


def events(value: Any) -> list[str] | None:
    if value is None:
        return None
    known = list(EVENT_KEYS)
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(e, str) and e in known for e in value)
    ):
        raise ApiError(400, f"events must be a non-empty list of: {', '.join(known)}.")
    return list(dict.fromkeys(value))


def json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"")
    except ValueError:
        raise ApiError(400, "Request body must be valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object.")
    return body


def present(body: dict[str, Any], *names: str) -> bool:
    """Whether every field is there and not empty (the spec's 'required')."""
    return all(body.get(n) not in (None, "") for n in names)
