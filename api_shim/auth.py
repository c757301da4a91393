"""JWT authentication of the dashboard: `Authorization: Bearer <JWT>` → the DashClicks account.

HS256 with JWT_SECRET (at least 32 bytes outside DEVELOPMENT), or RS256 with JWT_PUBLIC_KEY.
`exp` is required, a number, and at most JWT_MAX_LIFETIME ahead; `iss` and `aud` are required
when JWT_ISSUER / JWT_AUDIENCE are set. Only the configured algorithm is accepted, so
`alg: none` and algorithm-confusion tokens fail verification.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict

import jwt

from callrail_sync import errors
from callrail_sync.config import Settings
from callrail_sync.ids import is_object_id

# A compact JWS (RFC 7515): three base64url parts, unpadded. Matched whole, so that a token
# with padding, whitespace or anything else added is refused rather than decoded leniently.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")

# A development-only secret, used by `callrail-sync serve` and `token` when JWT_SECRET is unset.
DEV_SECRET = "callrail-sync-dev-secret-do-not-use-in-production"

# How long a development token lasts: the one `serve` and `stack` print and `callrail-sync token`
# alike, so a token pasted from either behaves the same.
DEV_TOKEN_TTL = 7 * 24 * 3600


MIN_SECRET_BYTES = 32
"""HS256 with a shorter secret can be brute-forced offline from one token."""


def verification_key(settings: Settings) -> tuple[str, str]:
    if settings.jwt_public_key:
        return settings.jwt_public_key, "RS256"
    if settings.jwt_secret:
        if len(settings.jwt_secret.encode()) < MIN_SECRET_BYTES and not settings.development:
            raise RuntimeError(
                f"JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes "
                "(DEVELOPMENT=true accepts a shorter one)"
            )
        return settings.jwt_secret, "HS256"
    raise RuntimeError("set JWT_SECRET (HS256) or JWT_PUBLIC_KEY (RS256)")


def bearer_token(header: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header."""
    if not header:
        raise errors.Unauthenticated("Authorization token is required.")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.Unauthenticated("Authorization header must be 'Bearer <token>'.")
    token = token.strip()
    if _COMPACT_JWS.fullmatch(token) is None:
        raise errors.Unauthenticated("Invalid token.")
    return token


def verify(token: str, settings: Settings) -> tuple[str, float]:
    """(account id, expiry as a Unix time) of a token whose signature and claims hold."""
    key, algorithm = verification_key(settings)
    required = ["exp"] + (["iss"] if settings.jwt_issuer else [])
    required += ["aud"] if settings.jwt_audience else []
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            options={"require": required},
        )
    except jwt.ExpiredSignatureError:
        raise errors.Unauthenticated("Token has expired.") from None
    except jwt.PyJWTError:
        raise errors.Unauthenticated("Invalid token.") from None
    if not _lifetime_ok(claims, settings.jwt_max_lifetime):
        raise errors.Unauthenticated("Invalid token.")
    account_id = claims.get("account_id")
    if not is_object_id(account_id):
        raise errors.ValidationFailed("INVALID_ACCOUNT_ID")
    return str(account_id).lower(), float(claims["exp"])


def _lifetime_ok(claims: dict[str, object], max_lifetime: float) -> bool:
    """`exp` a number (not a numeric string) at most `max_lifetime` ahead, and after `iat`."""
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return False
    slack = 60.0  # clocks differ a little
    if exp - time.time() > max_lifetime + slack:
        return False
    if isinstance(iat, int | float) and not isinstance(iat, bool):
        return exp - iat <= max_lifetime + slack
    return True


class Authenticator:
    """Verifies bearer tokens, and remembers each valid one until it expires: a dashboard
    sends the same token with every request, and its signature does not change (verifying
    it was a tenth of the time of a cached page read). Only valid tokens are remembered."""

    def __init__(self, settings: Settings, size: int = 10_000) -> None:
        verification_key(settings)  # a key too weak to use stops the shim at its start
        self._settings = settings
        self._known: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._size = size

    def session(self, header: str | None) -> tuple[str, float]:
        """(the DashClicks account, when the token expires as a Unix time)."""
        token = bearer_token(header)
        known = self._known.get(token)
        if known is not None and known[1] > time.time():
            return known
        owner, expires = verify(token, self._settings)
        self._known[token] = (owner, expires)
        while len(self._known) > self._size:
            self._known.popitem(last=False)
        return owner, expires


def issue_token(
    account_id: str,
    secret: str,
    ttl_seconds: int = 3600,
    *,
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    """A signed HS256 token for `account_id` (development and tests), with `iss` and `aud`
    when the service requires them (JWT_ISSUER, JWT_AUDIENCE)."""
    now = int(time.time())
    claims: dict[str, object] = {"account_id": account_id, "iat": now, "exp": now + ttl_seconds}
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256")
