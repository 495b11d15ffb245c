"""Recording stand-ins for the daemon's adapters, for unit tests of what it decides to do."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from knocknft.core.grants import Grant, render_grant


class RecordingNft:
    """An `Nft` that records every script; grants are recorded as their equivalent script
    (tests/unit/test_setelem.py and tests/integration/test_setelem.py hold the two equal)."""

    def __init__(self) -> None:
        self.scripts: list[str] = []

    def run(self, script: str) -> None:
        self.scripts.append(script)

    def list_json(self, command: str) -> dict[str, Any]:
        return {}

    def grant(self, table: str, grants: Sequence[Grant]) -> None:
        self.scripts.append(render_grant(table, grants))


class RecordingRunner:
    """A `CommandRunner` that records commands instead of running them."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def submit(self, door: str, command: str, client: str = "") -> None:
        self.commands.append(command)

    def close(self) -> None:
        pass
