"""What every test shares: temporary files live in pytest's own temporary tree.

A test that asks tempfile for a directory (or runs a program that does) used to leave it in the
host's /tmp for good, also when it passed. Pointing tempfile and TMPDIR at a fresh directory of
pytest's (beside the test's tmp_path) puts all of them where pytest prunes old runs;
tests/unit/test_temp_files.py keeps import-time temporary files (made before this fixture runs)
out of the tree.
"""

from __future__ import annotations

import tempfile

import pytest


@pytest.fixture(autouse=True)
def _temp_files_in_pytests_tree(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Beside tmp_path, not in it: tests that list their tmp_path see only what they made.
    scratch = tmp_path_factory.mktemp("tmp")
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    # Programs the test runs (the daemon, a client) inherit it.
    monkeypatch.setenv("TMPDIR", str(scratch))
