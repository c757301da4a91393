"""Pydantic models of CallRail v3 objects.

CallRail adds fields over time, so every model accepts and keeps unknown fields
(`extra="allow"`): a snapshot stores what CallRail sent, not what we knew about.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class CallRailModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


def _id_as_str(value: Any) -> Any:
    # Older accounts have 9-digit numeric ids; keep every id a string so lookups agree.
    return str(value) if isinstance(value, int) else value


class Account(CallRailModel):
    id: str
    name: str = ""
    outbound_recording_enabled: bool | None = None
    hipaa_account: bool | None = None

    _coerce_id = field_validator("id", mode="before")(_id_as_str)


class Company(CallRailModel):
    id: str
    name: str = ""
    status: str = "active"
    time_zone: str | None = None
    created_at: str | None = None
    disabled_at: str | None = None

    _coerce_id = field_validator("id", mode="before")(_id_as_str)


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


class PageMeta(CallRailModel):
    """The paging fields of a collection response; each may be missing or wrong."""

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
