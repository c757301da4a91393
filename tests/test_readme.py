"""The README a newcomer reads first: short, pointing to every page of docs/, with examples a
shell passes through as they are, and a tour that works when pasted against `serve`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .test_serve import Serve, clean_env

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = sorted((ROOT / "docs").glob("*.md"))


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M)


def test_the_readme_is_short_and_points_to_every_page_of_docs():
    assert len(README.splitlines()) <= 300
    for page in DOCS:
        assert f"(docs/{page.name})" in README, f"the README does not link docs/{page.name}"


@pytest.mark.parametrize("page", [ROOT / "README.md", *DOCS], ids=lambda p: p.name)
def test_shell_examples_are_ascii_so_they_paste_through_any_shell(page):
    """A pasted `ACC…` sends three bytes outside ASCII; examples use `$ACCOUNT_ID`-style
    variables set from earlier answers instead."""
    for block in shell_blocks(page.read_text()):
        for line in block.splitlines():
            if not line.lstrip().startswith("#"):  # comments show answers, not commands
                assert line.isascii(), f"{page.name}: {line}"


def test_the_rooms_table_names_only_what_exists():
    text = (ROOT / "docs" / "architecture.md").read_text()
    rooms = text[text.index("| room | what lives there |") :].split("\n\n")[0]
    table = [line for line in rooms.splitlines() if line.startswith("| `")]
    assert len(table) > 20
    for line in table:
        room = line.split("|")[1]
        first, *rest = re.findall(r"`([^`]+)`", room)
        assert (ROOT / first).exists(), first
        folder = Path(first).parent if (ROOT / first).is_file() else Path(first)
        for name in rest:  # `listings.py`, or a module named without its folder
            if "/" in name:
                assert (ROOT / name).exists(), name
            else:
                assert (ROOT / folder / name).exists() or (ROOT / name).exists(), (first, name)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("jq") is None, reason="the tour uses jq")
def test_the_tour_works_when_pasted(tmp_path):
    """Every command of the tour, in order, with `bash -e`, against a real `serve`: the
    address changed to this serve's, the export line pasted from its banner."""
    serve = Serve(tmp_path / "run", clean_env(SYNC_STREAMS="all")).start()  # as a newcomer runs it
    try:
        tour = "\n".join(shell_blocks(README)[1:])  # the first block is the two commands
        assert "\nAPI=http://127.0.0.1:8000/v1/e/callrail\n" in f"\n{tour}"
        tour = tour.replace("127.0.0.1:8000", f"127.0.0.1:{serve.port}")
        env = {**clean_env(SYNC_STREAMS="all"), **serve.exports}
        env.pop("JWT_SECRET", None)
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", tour],
            cwd=ROOT,
            env={**env, "PATH": os.environ["PATH"]},
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        out = done.stdout
        assert out.count('"succeeded"') >= 1 and "null" not in out.split("\n")[0]
        assert '"per_page must be between 1 and 250."' in out  # the mistake, in the envelope
        assert "succeeded: 180 records in 1 pages" in out  # the CLI's sync
        assert "usage: callrail-sync" in out
    finally:
        serve.stop()
