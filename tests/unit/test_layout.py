"""The layout drawing in docs/DEVELOPMENT.md names every module of knocknft and knocklab, and
nothing else."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEVELOPMENT = REPO / "docs" / "DEVELOPMENT.md"
DRAWN = ("knocknft", "knocklab")


def drawn_files() -> set[str]:
    """Paths in the fenced block under `## Layout`, folders known by their indentation."""
    text = DEVELOPMENT.read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1]
    block = section.split("```", 2)[1]
    files: set[str] = set()
    folders: list[tuple[int, str]] = []
    for line in block.splitlines():
        match = re.match(r"^( *)(\S+)", line)
        if match is None:
            continue
        indent, name = len(match.group(1)), match.group(2)
        folders = [(i, f) for i, f in folders if i < indent]
        path = "/".join([f for _, f in folders] + [name.rstrip("/")])
        if name.endswith("/"):
            folders.append((indent, name.rstrip("/")))
        elif name.endswith(".py"):
            files.add(path)
    return files


def tree_files() -> set[str]:
    return {
        str(p.relative_to(REPO))
        for top in DRAWN
        for p in (REPO / top).rglob("*.py")
        if p.name != "__init__.py"
    }


def test_the_layout_drawing_matches_the_tree() -> None:
    drawn, tree = drawn_files(), tree_files()
    where = "the layout in docs/DEVELOPMENT.md"
    assert not tree - drawn, f"modules missing from {where}: {sorted(tree - drawn)}"
    assert not drawn - tree, f"{where} names modules that do not exist: {sorted(drawn - tree)}"
