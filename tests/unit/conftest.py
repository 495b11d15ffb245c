"""What every unit test shares: none of them may touch the host's own state."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from knocknft.config import DEFAULT_STATE_DIR


@pytest.fixture(autouse=True)
def _host_state_dir_untouched() -> Iterator[None]:
    """A unit test that leaves /var/lib/knocknft behind wrote the host's real state (the boot
    guard would load it at the next boot): give its config a state_dir under tmp_path."""
    existed = DEFAULT_STATE_DIR.exists()
    yield
    if not existed and DEFAULT_STATE_DIR.exists():
        pytest.fail(f"the test wrote {DEFAULT_STATE_DIR}: give its config a state_dir of its own")
