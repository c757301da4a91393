"""The shapes of the ids the service accepts, matched whole (no `$`-before-newline slips)."""

from __future__ import annotations

import re

_OBJECT_ID = re.compile(r"[0-9a-fA-F]{24}")
_CALLRAIL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CALLRAIL_ACCOUNT_ID = re.compile(r"ACC[0-9a-f]{32}|[0-9]{1,18}")


def is_object_id(value: object) -> bool:
    """A DashClicks account id: 24 hex characters."""
    return isinstance(value, str) and _OBJECT_ID.fullmatch(value) is not None


def is_callrail_id(value: object) -> bool:
    """A CallRail id (COM…, numeric) or ours (web_…): letters, digits, _ and -."""
    return isinstance(value, str) and _CALLRAIL_ID.fullmatch(value) is not None


def is_callrail_account_id(value: object) -> bool:
    """A CallRail account id as CallRail writes one: `ACC` and 32 lower-case hex digits, or
    the older all-digit form (`470306151`; at most 18 digits, so it fits a 64-bit integer)."""
    return isinstance(value, str) and _CALLRAIL_ACCOUNT_ID.fullmatch(value) is not None
