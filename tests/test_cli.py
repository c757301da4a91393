"""The command line as a user meets it: help that speaks to users, input refused before it is
used, one rule for `--account`, a table that stays aligned, `./dev` that says what it does."""

from __future__ import annotations

import argparse
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest

from api_shim.auth import DEV_SECRET, DEV_TOKEN_TTL
from callrail_sync.cli.insight import STATUS_COLUMNS, status_table
from callrail_sync.cli.main import build_parser, main
from callrail_sync.cli.ops import Context
from callrail_sync.config import Settings
from callrail_sync.status import Budget, ListingStatus

ROOT = Path(__file__).resolve().parents[1]
DEMO = "64f1c2a9e4b0a1b2c3d4e5f6"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the command in this process; (rc, stdout, stderr), whether it exits or returns."""
    ctx = Context(Settings(jwt_secret=None))
    try:
        rc = main(argv, ctx)
    except SystemExit as exit_:
        rc = exit_.code if isinstance(exit_.code, int) else 1
    out, err = capsys.readouterr()
    return rc, out, err


# --- token: bad input is refused, not signed ---------------------------------------------


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--account", "nothex"], "'nothex' is not a DashClicks account id (24 hex characters)"),
        (["--account", "g" * 24], "is not a DashClicks account id"),
        (["--ttl", "-5"], "-5 is out of range: a token lasts 1 s or more"),
        (["--ttl", "0"], "0 is out of range"),
        (["--ttl", "604801"], "604801 is out of range: the service takes tokens that last at most"),
        (["--ttl", "soon"], "'soon' is not a whole number of seconds"),
    ],
)
def test_token_refuses_what_the_server_would_refuse(argv, says, capsys):
    rc, out, err = run(["token", *argv], capsys)
    assert rc == 2
    assert out == ""  # no token printed
    assert says in err


def test_the_token_printed_is_one_the_service_takes(capsys):
    """Whatever the service's JWT settings: issuer and audience when it requires them; and
    where it verifies RS256, no HS256 token it would refuse."""
    from api_shim.auth import verify

    strict = Settings(jwt_secret="s" * 40, jwt_issuer="dashclicks", jwt_audience="callrail-sync")
    rc = main(["token", "--account", DEMO], Context(strict))
    out, _ = capsys.readouterr()
    assert rc == 0 and verify(out.strip(), strict)[0] == DEMO
    rsa = Settings(jwt_secret=None, jwt_public_key="-----BEGIN PUBLIC KEY-----\n...")
    assert main(["token"], Context(rsa)) == 2
    out, err = capsys.readouterr()
    assert out == "" and "RS256" in err
    short = Settings(jwt_secret="s" * 40, jwt_max_lifetime=3600)
    assert main(["token", "--ttl", "3601"], Context(short)) == 2
    assert "at most 3600 seconds (JWT_MAX_LIFETIME)" in capsys.readouterr().err
    assert main(["token", "--ttl", "3600"], Context(short)) == 0
    assert verify(capsys.readouterr().out.strip(), short)[0] == DEMO


def test_token_lasts_as_long_as_the_banners_and_defaults_to_the_demo_account(capsys):
    rc, out, _ = run(["token"], capsys)
    assert rc == 0
    claims = jwt.decode(out.strip(), DEV_SECRET, algorithms=["HS256"])
    assert claims["account_id"] == DEMO
    assert claims["exp"] - claims["iat"] == DEV_TOKEN_TTL == 7 * 24 * 3600
    rc, out, _ = run(["token", "--account", "ABCDEF0123456789abcdef01", "--ttl", "60"], capsys)
    claims = jwt.decode(out.strip(), DEV_SECRET, algorithms=["HS256"])
    assert rc == 0 and claims["account_id"] == "abcdef0123456789abcdef01"
    assert claims["exp"] - claims["iat"] == 60


# --- one rule for --account ---------------------------------------------------------------


def test_every_account_option_follows_one_rule():
    """Each verb's --account is a checked DashClicks id; it defaults to DEMO_ACCOUNT_ID wherever
    it is optional, except `jobs` (every account's) and `keys` (always required)."""
    parser = build_parser()
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    seen = {}
    for name, sub in verbs.choices.items():
        for action in sub._actions:
            if "--account" in action.option_strings:
                defaults = sub.get_default("account_defaults") is True
                seen[name] = "required" if action.required else ("demo" if defaults else "all")
    assert seen == {
        "token": "demo",
        "sync": "demo",
        "status": "demo",
        "changes": "demo",
        "records": "demo",
        "jobs": "all",
        "keys": "required",
    }


@pytest.mark.parametrize("verb", ["status", "changes", "sync", "keys"])
def test_an_account_that_is_not_an_id_is_refused_by_every_verb(verb, capsys):
    argv = [verb, "--account", "nothex"] if verb != "keys" else [verb, "set", "--account", "x"]
    rc, _, err = run(argv, capsys)
    assert rc == 2 and "is not a DashClicks account id" in err


# --- help speaks to users -------------------------------------------------------------------


def test_help_speaks_to_users(capsys):
    rc, out, _ = run(["--help"], capsys)
    assert rc == 0
    for developer_talk in ("subcommand", "dispatch", "`main`", "positional arguments"):
        assert developer_talk not in out
    assert "callrail-sync serve" in out and "export" in out  # where to start, and what next
    assert "DEMO_ACCOUNT_ID" in out  # the --account rule, said once
    parser = build_parser()
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in verbs.choices.items():
        assert sub.description, f"{name} --help has no description"
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.option_strings or action.dest} has no help"


# --- the status table stays aligned ---------------------------------------------------------


def listing(account: str | None, state: str, records: int | None, error: bool = False):
    return ListingStatus(
        kind="accounts" if account is None else "companies",
        account_id=account,
        state=state,
        last_success_at=datetime(2026, 12, 6, 10, 0, tzinfo=UTC) if records else None,
        last_attempt_at=None,
        next_scheduled_at=None,
        counts={} if records is None else {"records": records},
        last_error={"class": "upstream", "message": "CallRail error", "remedy": "Wait."}
        if error
        else None,
        job=None,
        paused=False,
        interval_seconds=3600,
        budget=Budget(hour_left=1000, day_left=10_000, throttled_until=None),
    )


def test_the_status_table_keeps_its_columns_aligned_with_long_names():
    entries = [
        listing(None, "fresh", 3),
        listing("ACC" + "f" * 32, "retrying", 123_456, error=True),
        listing("ACC1", "never", None),
    ]
    lines = status_table(entries)
    table = [line for line in lines if not line.startswith(" ")]  # error lines are indented
    assert len(table) == 4
    # Every column begins where its header begins, on every row.
    starts = [lines[0].index(name) for name in STATUS_COLUMNS]
    for row, entry in zip(table[1:], entries, strict=True):
        assert row[starts[1] :].split("  ")[0].strip() == entry.state
        assert row[: starts[1]].rstrip() in ("accounts", f"companies of {entry.account_id}")
    # Right-aligned columns end where their headers end.
    ends = [lines[0].index(name) + len(name) for name in STATUS_COLUMNS]
    for row in table[1:]:
        for end in ends[2:]:
            assert row[end - 1] != " " and (end == len(row) or row[end] == " ")
    error = lines[3]
    assert error.startswith(" " * starts[1]) and error.strip() == "upstream: CallRail error"


# --- ./dev -------------------------------------------------------------------------------------


def test_dev_alone_prints_its_usage():
    plain = subprocess.run(["./dev"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert plain.returncode == 0
    assert plain.stdout.startswith("usage: ./dev COMMAND")
    for command in ("serve", "test", "stack", "lint", "bench"):
        assert f"\n  {command} " in plain.stdout
    assert "set -e" not in plain.stdout and "#" not in plain.stdout
    wrong = subprocess.run(["./dev", "nope"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert wrong.returncode == 2 and wrong.stderr.startswith("usage: ./dev COMMAND")


# --- Flower's password ------------------------------------------------------------------------


def test_the_stack_hands_flower_its_password_through_the_environment(tmp_path):
    """A command line shows in `ps` to every user of the machine; the environment does not."""
    from callrail_sync.cli.stack import Stack, StackConfig

    stack = Stack(StackConfig(run_dir=tmp_path), Settings(mongo_url="mongodb://127.0.0.1:1"))
    part = stack.flower_part()
    user, password = stack.flower_auth
    assert not any(password in arg for arg in part.argv)
    assert part.env is not None and part.env["FLOWER_BASIC_AUTH"] == f"{user}:{password}"
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "--basic-auth" not in compose and "FLOWER_BASIC_AUTH: ${FLOWER_BASIC_AUTH" in compose
