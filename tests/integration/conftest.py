"""Integration fixtures: a fresh server/client namespace pair per test, torn down also on failure.

Everything runs against the real kernel: nft tables live in the server namespace, packets cross a
real veth pair. Skips say why when the machine cannot do this; CI runs as root and runs them all.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from knocklab.lab import Lab, Listener, can_use_namespaces
from tests.integration.support import EXAMPLE_CONFIG, Server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A conftest's own pytestmark marks nothing: the skip goes on each collected test here.
    why_not = can_use_namespaces()
    if why_not is None:
        return
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.skip(reason=f"kernel tests: {why_not}"))


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


@pytest.fixture
def server(lab: Lab, tmp_path: Path) -> Server:
    """The server with the example config (interfaces: [eth0], 22/tcp protected) applied."""
    srv = Server(lab, EXAMPLE_CONFIG, tmp_path / "state")
    srv.knocknft("apply")
    return srv
