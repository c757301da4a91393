"""The signature on our notifications: `X-Callrail-Sync-Signature: t=<unix>,v1=<hex>`, where
hex is HMAC-SHA256 with the owner's secret over `<t>.<raw body>`.

Signing the time with the body lets a receiver refuse a replayed old delivery; `verify` is what
a receiver written in Python does (docs/api.md shows it).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

HEADER = "X-Callrail-Sync-Signature"
TOLERANCE = 300
"""Seconds a receiver accepts between the signed time and its clock."""


def sign(secret: str, body: bytes, timestamp: int | None = None, also: Sequence[str] = ()) -> str:
    """The header value for `body`, signed now (or at `timestamp`); `also` adds a `v1=` for
    each other secret (the previous one, for a while after a rotation)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t}" + "".join(f",v1={_mac(s, t, body)}" for s in (secret, *also))


def verify(secret: str, header: str, body: bytes, tolerance: float = TOLERANCE) -> bool:
    """Whether `header` signs `body` with `secret`, at a time within `tolerance` of now."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        fields.setdefault(name, []).append(value)
    try:
        t = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - t) > tolerance:
        return False
    expected = _mac(secret, t, body)
    # The format allows several v1 values; any one that matches will do.
    return any(hmac.compare_digest(expected, v) for v in fields.get("v1", []))


def _mac(secret: str, t: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
