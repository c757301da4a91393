"""The types the shim's query and body models are made of. Each checks its raw value (text in
a query, any JSON in a body) and refuses a bad one with a ValueError whose words are the 400's
message (`envelope` answers it); the type itself is what /openapi.json shows."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, BeforeValidator, Field, ValidationError, model_validator

from callrail_sync.callrail.webhooks import EVENT_KEYS
from callrail_sync.errors import ValidationFailed
from callrail_sync.ids import is_callrail_account_id, is_callrail_id

MAX_PER_PAGE = 250
"""The most records one page of a listing answers with (as CallRail's own maximum)."""
MAX_PAGE = 1_000_000
"""The last page a listing may ask for: far past any account's records, and far below where
MongoDB's 64-bit `skip` would overflow."""
TRUE, FALSE = {"true", "1", "yes"}, {"false", "0", "no"}
M = TypeVar("M", bound=BaseModel)


def whole(
    name: str, default: int, maximum: int | None = None, top: int | None = None
) -> Callable[[Any], int]:
    """A whole number from 1 (to `maximum`: "between"; to `top`: "at most"); empty: default."""

    def check(raw: Any) -> int:
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a whole number.") from None
        if value < 1 or (maximum is not None and value > maximum):
            bounds = f"between 1 and {maximum}" if maximum else "at least 1"
            raise ValueError(f"{name} must be {bounds}.")
        if top is not None and value > top:
            raise ValueError(f"{name} must be at most {top}.")
        return value

    return check


def flag(name: str, strict: bool = False) -> Callable[[Any], bool]:
    """true/1/yes or false/0/no, any case (empty: false); `strict`: JSON true or false only."""

    def check(raw: Any) -> bool:
        if isinstance(raw, bool):
            return raw
        word = None if strict or not isinstance(raw, str) else raw.lower()
        if word in TRUE or word in FALSE or word == "":
            return word in TRUE
        if raw is None and not strict:
            return False
        raise ValueError(f"{name} must be true or false.")

    return check


def sort_order(allowed: tuple[str, ...], default: str = "name") -> Callable[[Any], str]:
    """`field` or `-field` (descending), the field one of `allowed`."""

    def check(raw: Any) -> str:
        value = (raw or default).strip()
        if value.lstrip("-") not in allowed:
            raise ValueError(
                f"sort must be one of: {', '.join(allowed)} (prefix - for descending)."
            )
        return str(value)

    return check


def _search(raw: Any) -> str | None:
    if raw is None or raw.strip() == "":
        return None
    if len(raw) > 200:
        raise ValueError("search must be at most 200 characters.")
    if any(unicodedata.category(c) == "Cc" for c in raw):
        # Names hold no control characters, and MongoDB refuses a pattern with a NUL in it.
        raise ValueError("search must not contain control characters.")
    return str(raw.strip())


def callrail_id(name: str, account: bool = False) -> Callable[[Any], str]:
    """A CallRail id: an account's (`ACC` and 32 hex, or all digits), or another (COM…,
    numeric, or our web_…: letters, digits, _ and - only). A JSON number is taken as text."""
    shape = is_callrail_account_id if account else is_callrail_id

    def check(raw: Any) -> str:
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = str(raw)
        if not isinstance(raw, str):
            raise ValueError(f"{name} must be a string.")
        if not shape(raw):
            raise ValueError(f"{name} is not a valid id.")
        return raw

    return check


def text(name: str) -> Callable[[Any], str]:
    """A string (checked further where it is used, as a URL is)."""

    def check(raw: Any) -> str:
        if not isinstance(raw, str):
            raise ValueError(f"{name} must be a string.")
        return raw

    return check


def _events(raw: Any) -> list[str]:
    known = list(EVENT_KEYS)
    if not isinstance(raw, list) or not raw or not all(e in known for e in raw):
        raise ValueError(f"events must be a non-empty list of: {', '.join(known)}.")
    return list(dict.fromkeys(raw))


ACCOUNT_PATTERN = r"^(ACC[0-9a-f]{32}|[0-9]{1,18})$"
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
Page = Annotated[int, Field(ge=1, le=MAX_PAGE), BeforeValidator(whole("page", 1, top=MAX_PAGE))]
PerPage = Annotated[
    int, Field(ge=1, le=MAX_PER_PAGE), BeforeValidator(whole("per_page", 10, MAX_PER_PAGE))
]
Search = Annotated[str | None, BeforeValidator(_search)]
AccountId = Annotated[
    str, Field(pattern=ACCOUNT_PATTERN), BeforeValidator(callrail_id("account_id", account=True))
]
CompanyId = Annotated[str, Field(pattern=ID_PATTERN), BeforeValidator(callrail_id("company_id"))]
WebhookId = Annotated[str, Field(pattern=ID_PATTERN), BeforeValidator(callrail_id("webhook_id"))]
Events = Annotated[list[str], Field(min_length=1), BeforeValidator(_events)]


def present(body: dict[str, Any], *names: str) -> bool:
    """Whether every field is there and not empty (the spec's 'required')."""
    return all(body.get(n) not in (None, "") for n in names)


class Checked(BaseModel):
    """A query or body model whose `required` fields must be there and not empty, else the
    route's one `missing` message (as the spec has it); then each field is checked alone."""

    required: ClassVar[tuple[str, ...]] = ()
    missing: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _present(cls, given: Any) -> Any:
        if not isinstance(given, dict) or not present(given, *cls.required):
            raise ValueError(cls.missing)
        return given


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


def json_body(model: type[M], empty: bool = False) -> Callable[[Request], Any]:
    """A dependency: the request's JSON object as `model` (an empty body as `{}` if `empty`).
    The body is parsed here, after the token and key checks that come before it in a
    route's parameters, whatever its Content-Type."""

    async def parsed(request: Request) -> M:
        raw = await request.body()
        body = {} if empty and not raw.strip() else json_object(raw)
        try:
            return model.model_validate(body)
        except ValidationError as invalid:
            raise RequestValidationError(invalid.errors()) from None

    return parsed


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """The request body of a route whose body is read by `json_body`, for /openapi.json."""
    schema = model.model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
