"""The package's floors: each room imports only from the floors below it; X and Y never import each other;
the core imports no way to run them. A newcomer can trust the tree's shape because this test holds it."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT

PACKAGE = ROOT / "txnwatch"
# Lower floors first. Rooms on one floor do not import each other.
FLOORS = [
    {"core"},
    {"ingest", "detect"},
    {"records", "generate"},
    {"databricks"},
    {"airflow"},
    {"local"},
    {"cli"},
    {"__main__"},
]
FLOOR = {room: i for i, rooms in enumerate(FLOORS) for room in rooms}


def _room(path: Path) -> str:
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def _imported_rooms(path: Path) -> set[str]:
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != "txnwatch":
                continue
            rooms |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            rooms |= {a.name.split(".")[1] for a in node.names if a.name.startswith("txnwatch.")}
    return rooms


def test_every_room_has_a_floor_and_says_what_lives_there():
    rooms = {_room(p) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE}
    assert rooms <= set(FLOOR), f"rooms without a floor: {rooms - set(FLOOR)}"
    for init in PACKAGE.glob("*/__init__.py"):
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init} says nothing about its room"


def test_no_import_runs_up_a_floor_or_across_one():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent == PACKAGE and path.name == "__init__.py":
            continue
        room = _room(path)
        for other in _imported_rooms(path) - {room}:
            if other in FLOOR and FLOOR[other] >= FLOOR[room]:
                wrong.append(f"{path.relative_to(ROOT)}: {room} imports {other}")
    assert not wrong, "\n".join(sorted(wrong))
