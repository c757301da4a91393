"""The opaque page cursor of every cursor-paged listing (`/changes`, `/records/{stream}`,
`/calls`): its own fields as compact JSON, in URL-safe base64 without padding."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from callrail_sync.errors import ValidationFailed


def encode(fields: dict[str, Any]) -> str:
    raw = json.dumps(fields, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, valid: Callable[[Any], Any], refusal: str) -> Any:
    """A cursor's fields if `valid` finds them so (it may index them freely: a missing or
    mistyped field is refused too); ValidationFailed(refusal) otherwise."""
    try:
        fields = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        ok = valid(fields)
    except (binascii.Error, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise ValidationFailed(refusal)
    return fields
