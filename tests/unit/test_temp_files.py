"""Tests leave nothing in the host's /tmp: tempfile points into pytest's temporary tree
(tests/conftest.py), and nothing makes temporary files at import, before that fixture runs."""

from __future__ import annotations

import ast
import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Code that runs under pytest: the tests and the lab they drive.
TEST_CODE = ("tests", "knocklab")


def test_temporary_files_of_a_test_land_in_pytests_tree(tmp_path: Path) -> None:
    made = Path(tempfile.mkdtemp())
    assert tmp_path.parent in made.parents and tmp_path not in made.parents
    assert Path(os.environ["TMPDIR"]) == Path(tempfile.gettempdir())


def _import_time_tempfile_calls(path: Path) -> list[str]:
    """Calls into tempfile made while the module is imported (outside any def or lambda)."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "tempfile"
        ):
            found.append(f"{path.relative_to(REPO)}:{node.lineno}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found


def test_no_module_makes_temporary_files_at_import() -> None:
    # A module-level mkdtemp runs at collection, before the fixture points tempfile at tmp_path,
    # and stays in /tmp for good (also when the module's tests are deselected).
    offenders = [
        hit
        for top in TEST_CODE
        for path in sorted((REPO / top).rglob("*.py"))
        for hit in _import_time_tempfile_calls(path)
    ]
    assert offenders == [], "make it in a fixture (tmp_path, tmp_path_factory): " + ", ".join(
        offenders
    )
