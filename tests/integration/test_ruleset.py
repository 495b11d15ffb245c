"""Every saved expected ruleset is real nft: the kernel accepts it, twice in a row."""

from __future__ import annotations

import pytest

from knocknft.lab import Lab
from tests.unit.test_render import SCENARIOS, scenario_names


@pytest.mark.parametrize("name", scenario_names())
def test_expected_ruleset_loads_and_reloads(lab: Lab, name: str) -> None:
    script = (SCENARIOS / name / "expected.nft").read_text()
    lab.server.run("nft", "-f", "-", input=script)
    lab.server.run("nft", "-f", "-", input=script)  # re-apply over itself
    listing = lab.server.run("nft", "list", "ruleset").stdout
    assert "allow4" in listing and "chain input" in listing
