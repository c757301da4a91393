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


def test_stack_generates_its_own_jwt_secret_and_token_signs_with_it(tmp_path, monkeypatch, capsys):
    """stack keeps a secret of its own in its run dir (0600) and its export line names that
    file, never the secret: `callrail-sync token` in a shell with that line signs tokens the
    stack's shim accepts (it signed with the development secret before: 401)."""
    from api_shim.auth import DEV_SECRET
    from callrail_sync.cli.main import main
    from callrail_sync.cli.stack import Stack, StackConfig, banner, keep_secret

    first = Stack(StackConfig(run_dir=tmp_path / "a"), Settings(jwt_secret=None))
    other = Stack(StackConfig(run_dir=tmp_path / "b"), Settings(jwt_secret=None))
    assert first.jwt_secret != DEV_SECRET and len(first.jwt_secret) >= 32
    assert first.jwt_secret != other.jwt_secret
    given = Stack(StackConfig(run_dir=tmp_path / "c"), Settings(jwt_secret=SECRET))
    assert given.jwt_secret == SECRET
    first.run_dir.mkdir(exist_ok=True)
    keep_secret(first.jwt_secret_file, first.jwt_secret)  # as start() does
    assert first.jwt_secret_file.stat().st_mode & 0o777 == 0o600
    env = first.env()
    assert "JWT_SECRET" not in env and first.jwt_secret not in env.values()
    shown = banner(first, "TOKEN")
    assert first.jwt_secret not in shown
    (export,) = [line for line in shown.splitlines() if "export " in line]
    assert f"JWT_SECRET_FILE={first.jwt_secret_file}" in export
    for name, value in (w.split("=", 1) for w in export.split("export ", 1)[1].split()):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("JWT_SECRET", raising=False)
    assert main(["token", "--account", OWNER]) == 0
    token = capsys.readouterr().out.strip()
    assert verify(token, Settings(jwt_secret=first.jwt_secret))[0] == OWNER
    again = Stack(StackConfig(run_dir=first.run_dir), Settings(jwt_secret=None))
    assert again.jwt_secret == first.jwt_secret  # a restart keeps its tokens valid
    monkeypatch.setenv("JWT_SECRET", "x" * 32)
    with pytest.raises(ValueError, match="both set and differ"):
        Settings()
    assert main(["token", "--account", OWNER]) == 2  # one line, no traceback
    assert "both set and differ: unset one" in capsys.readouterr().err
