"""JWT: a lifetime bound, `exp` a number, required `iss`/`aud` when configured, and a secret
long enough to resist offline guessing (outside development)."""

from __future__ import annotations

import time

import jwt
import pytest

from api_shim.auth import Authenticator, issue_token, verify
from callrail_sync.config import Settings
from callrail_sync.errors import Unauthenticated

OWNER = "64f1c2a9e4b0a1b2c3d4e5f6"
SECRET = "s" * 32


def signed(secret: str = SECRET, **claims: object) -> str:
    return jwt.encode({"account_id": OWNER, **claims}, secret, algorithm="HS256")


def refused(token: str, settings: Settings) -> str:
    with pytest.raises(Unauthenticated) as error:
        verify(token, settings)
    return error.value.user_message


def test_a_token_that_lives_longer_than_the_maximum_is_refused():
    s = Settings(jwt_secret=SECRET)
    assert s.jwt_max_lifetime == 7 * 24 * 3600
    assert refused(signed(exp=10**12), s) == "Invalid token."
    now = int(time.time())
    assert refused(signed(exp=now + 8 * 24 * 3600), s) == "Invalid token."
    # Issued long ago, valid for longer than the maximum: refused though exp is near.
    assert refused(signed(iat=now - 30 * 24 * 3600, exp=now + 3600), s) == "Invalid token."
    assert verify(signed(iat=now, exp=now + 3600), s) == (OWNER, now + 3600)
    assert verify(issue_token(OWNER, SECRET, ttl_seconds=7 * 24 * 3600), s)[0] == OWNER


def test_exp_must_be_a_number_not_a_numeric_string():
    s = Settings(jwt_secret=SECRET)
    assert refused(signed(exp=str(int(time.time()) + 3600)), s) == "Invalid token."


def test_iss_and_aud_are_required_when_configured():
    s = Settings(jwt_secret=SECRET, jwt_issuer="dashclicks", jwt_audience="callrail-sync")
    exp = int(time.time()) + 600
    assert refused(signed(exp=exp), s) == "Invalid token."
    assert refused(signed(exp=exp, iss="dashclicks"), s) == "Invalid token."
    assert refused(signed(exp=exp, iss="other", aud="callrail-sync"), s) == "Invalid token."
    assert refused(signed(exp=exp, iss="dashclicks", aud="other"), s) == "Invalid token."
    assert verify(signed(exp=exp, iss="dashclicks", aud="callrail-sync"), s)[0] == OWNER


def test_a_short_secret_stops_the_shim_outside_development():
    with pytest.raises(RuntimeError, match="at least 32 bytes"):
        Authenticator(Settings(jwt_secret="sekret"))
    Authenticator(Settings(jwt_secret="sekret", development=True))  # trying the service
    Authenticator(Settings(jwt_secret=SECRET))


def test_stack_generates_its_own_jwt_secret(tmp_path):
    from api_shim.auth import DEV_SECRET
    from callrail_sync.cli.stack import Stack, StackConfig

    first = Stack(StackConfig(run_dir=tmp_path), Settings(jwt_secret=None))
    second = Stack(StackConfig(run_dir=tmp_path), Settings(jwt_secret=None))
    assert first.jwt_secret != DEV_SECRET and len(first.jwt_secret) >= 32
    assert first.jwt_secret != second.jwt_secret
    assert first.env()["JWT_SECRET"] == first.jwt_secret
    given = Stack(StackConfig(run_dir=tmp_path), Settings(jwt_secret=SECRET))
    assert given.jwt_secret == SECRET
