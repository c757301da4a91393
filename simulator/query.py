"""Query parameters and offset pagination, as every CallRail v3 listing reads and answers them.

Shared by the listings of `api.py` and the calls listing of `call_listing.py`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from simulator.replies import error

Query = dict[str, list[str]]

MAX_PER_PAGE = 250
DEFAULT_PER_PAGE = 100


def param(query: Query, name: str) -> str | None:
    """The last value given for a parameter, or None."""
    values = query.get(name)
    return values[-1] if values else None


def asked_fields(query: Query, known: Iterable[str] | None = None) -> set[str]:
    """The names asked for with `fields=a,b` (sparse, extra fields); with `known`, a name not
    among them is a 400 reply."""
    raw = param(query, "fields") or ""
    asked = {f.strip() for f in raw.split(",") if f.strip()}
    unknown = sorted(asked - set(asked if known is None else known))
    if unknown:
        raise error(400, f"Invalid fields: {', '.join(unknown)}")
    return asked


def per_page(query: Query) -> int:
    """`per_page`: 100 by default; above the documented maximum of 250 the maximum is served
    (a guess, unverified); not a positive number: a 400 reply."""
    return min(_positive(query, "per_page", DEFAULT_PER_PAGE), MAX_PER_PAGE)


def page_number(query: Query) -> int:
    """`page`: 1 by default; not a positive number: a 400 reply."""
    return _positive(query, "page", 1)


def _positive(query: Query, name: str, default: int) -> int:
    try:
        number = int(param(query, name) or default)
    except ValueError:
        raise error(400, "page and per_page must be numbers") from None
    if number < 1:
        raise error(400, "page and per_page must be positive")
    return number


def sort_asked(query: Query, allowed: Iterable[str]) -> tuple[str, bool] | None:
    """`sort` (one of `allowed`) and whether `order` is `desc`; None: no sort asked for.
    `order` without `sort`, or another `order` than asc or desc: a 400 reply."""
    sort, order = param(query, "sort"), param(query, "order")
    if order is not None and sort is None:
        raise error(400, "sort is required when order is given")
    if order not in (None, "asc", "desc"):
        raise error(400, "order must be asc or desc")
    if sort is None:
        return None
    if sort not in allowed:
        raise error(400, f"Invalid sort field: {sort}")
    return sort, order == "desc"


def paginate(name: str, items: list[dict[str, Any]], query: Query) -> dict[str, Any]:
    """One page of `items` by `page` and `per_page`, with CallRail's page metadata."""
    size, page = per_page(query), page_number(query)
    total = len(items)
    start = (page - 1) * size
    return {
        "page": page,
        "per_page": size,
        "total_pages": math.ceil(total / size),
        "total_records": total,
        # Copies: the page is written out after the data's lock is released.
        name: [dict(i) for i in items[start : start + size]],
    }
