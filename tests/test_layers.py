"""The house's layering (docs/architecture.md): imports only point down.

    worker -> celeryconfig -> tasks -> callrail_sync
    api_shim -> celeryconfig, tasks, callrail_sync        simulator -> nothing of ours

Read from the source with `ast`, so a late (function-level) import counts as much as a
top-level one. Pure logic: no server.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OURS = {"callrail_sync", "tasks", "worker", "api_shim", "simulator", "celeryconfig", "bench"}
ALLOWED: dict[str, set[str]] = {
    "callrail_sync": {"callrail_sync"},
    "tasks": {"tasks", "callrail_sync"},
    "worker": {"worker", "tasks", "callrail_sync", "celeryconfig"},
    "api_shim": {"api_shim", "tasks", "callrail_sync", "celeryconfig"},
    "simulator": {"simulator"},
    "celeryconfig": {"callrail_sync", "tasks"},
}
# The command line (callrail_sync/cli/) sits on top of everything: it starts the worker, the
# shim and the simulator, so it may import them all.
CLI = "callrail_sync/cli"


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & OURS


def modules() -> list[tuple[str, Path]]:
    out = []
    for room in ALLOWED:
        single = ROOT / f"{room}.py"  # a module of one file (celeryconfig.py)
        paths = [single] if single.exists() else sorted((ROOT / room).rglob("*.py"))
        for path in paths:
            if str(path.relative_to(ROOT)).startswith(CLI):
                continue
            out.append((room, path))
    return out


def test_imports_point_down() -> None:
    upward = [
        f"{path.relative_to(ROOT)} imports {sorted(above)} (above {room}/)"
        for room, path in modules()
        if (above := imports_of(path) - ALLOWED[room])
    ]
    assert {room for room, _ in modules()} == set(ALLOWED)  # every room is read
    assert not upward, "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The check itself can fail: a library module importing the shim is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from api_shim.app import create_app\n    return create_app\n")
    assert imports_of(bad) - ALLOWED["callrail_sync"] == {"api_shim"}
