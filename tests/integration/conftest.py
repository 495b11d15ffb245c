"""Integration fixtures: a fresh server/client namespace pair per test, torn down also on failure.

Everything runs against the real kernel: nft tables live in the server namespace, packets cross a
real veth pair. Skips say why when the machine cannot do this; CI runs as root and runs them all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from knocklab.lab import Lab, Listener, can_use_namespaces

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EXAMPLE_CONFIG = REPO / "config.example.yaml"

_why_not = can_use_namespaces()
pytestmark = pytest.mark.skipif(_why_not is not None, reason=f"kernel tests: {_why_not}")


# Commands that keep the last-known-good table in a state dir.
STATE_DIR_COMMANDS = ("apply", "guard")


@dataclass
class Server:
    """The server namespace, with knocknft's CLI run inside it."""

    lab: Lab
    config: Path
    # apply keeps the table here for the guard: a test's own directory, not the host's
    # /var/lib/knocknft.
    state_dir: Path | None = None

    def knocknft(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        has_config = any(a in ("-c", "--config") for a in args)
        extra = (
            []
            if has_config or args[:1] in (("--version",), ("--help",), ("guard",))
            else ["-c", str(self.config)]
        )
        if self.state_dir is not None and args[:1] in [(c,) for c in STATE_DIR_COMMANDS]:
            extra += ["--state-dir", str(self.state_dir)]
        result = self.lab.server.run(str(BIN / "knocknft"), *args, *extra, check=False)
        if check and result.returncode != 0:
            raise AssertionError(
                f"knocknft {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    def nft(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.lab.server.run("nft", *args, check=check)

    def status(self) -> list[dict[str, Any]]:
        grants: list[dict[str, Any]] = json.loads(self.knocknft("status", "--json").stdout)[
            "grants"
        ]
        return grants


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    with Lab(request.node.name.replace("test_", "")[:8]) as the_lab:
        yield the_lab


@pytest.fixture
def ssh_listener(lab: Lab) -> Iterator[Listener]:
    """The 'protected service': a TCP listener on port 22 in the server namespace."""
    listener = Listener(lab.server, 22)
    yield listener
    listener.close()


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def server(lab: Lab, tmp_path: Path) -> Server:
    """The server with the example config (interfaces: [eth0], 22/tcp protected) applied."""
    srv = Server(lab, EXAMPLE_CONFIG, tmp_path / "state")
    srv.knocknft("apply")
    return srv
