"""Pydantic models of the CallRail v3 objects handled one at a time: integrations, page metadata.

CallRail adds fields over time, so an object's model accepts and keeps unknown fields
(`extra="allow"`). Listing records (accounts, companies), read by the ten thousand, are not
models but checked dicts: see `records.py`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class CallRailModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


def _id_as_str(value: Any) -> Any:
    # Older accounts have 9-digit numeric ids; keep every id a string so lookups agree.
    return str(value) if isinstance(value, int) else value


class Integration(CallRailModel):
    id: str
    type: str
    state: str = "active"
    company_id: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    created_at: str | None = None
    updated_at: str | None = None

    _coerce_id = field_validator("id", mode="before")(_id_as_str)

    def urls_for(self, key: str) -> list[str]:
        value = self.config.get(key) or []
        return [value] if isinstance(value, str) else [str(u) for u in value]


class PageMeta(BaseModel):
    """The paging fields of a collection response; each may be missing or wrong. The rest of
    the response (the records) is not kept here."""

    model_config = ConfigDict(extra="ignore")

    page: int | None = None
    per_page: int | None = None
    total_pages: int | None = None
    total_records: int | None = None

    @field_validator("page", "per_page", "total_pages", "total_records", mode="before")
    @classmethod
    def _int_or_none(cls, value: Any) -> int | None:
        try:
            return int(value) if value is not None else None
        except (TypeError, ValueError):
            return None
