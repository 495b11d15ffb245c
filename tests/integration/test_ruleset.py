"""Every saved expected ruleset is real nft: the kernel accepts it, twice in a row."""

from __future__ import annotations

from pathlib import Path

import pytest

from knocklab.lab import Lab
from tests.integration.support import EXAMPLE_CONFIG, REPO, Server
from tests.scenarios import SCENARIOS, scenario_names


@pytest.mark.parametrize("name", scenario_names())
def test_expected_ruleset_loads_and_reloads(lab: Lab, name: str) -> None:
    script = (SCENARIOS / name / "expected.nft").read_text()
    lab.server.run("nft", "-f", "-", input=script)
    lab.server.run("nft", "-f", "-", input=script)  # re-apply over itself
    listing = lab.server.run("nft", "list", "ruleset").stdout
    assert "allow4" in listing and "chain input" in listing


def test_audit_skeleton_is_what_apply_installs_for_the_example(lab: Lab, tmp_path: Path) -> None:
    """rulesets/knocknft.nft must not drift from the renderer: both give the same table."""
    srv = Server(lab, EXAMPLE_CONFIG, tmp_path / "state")
    srv.knocknft("apply")
    applied = srv.nft("list", "table", "inet", "knocknft").stdout
    srv.nft("delete", "table", "inet", "knocknft")
    srv.nft("-f", str(REPO / "rulesets" / "knocknft.nft"))
    assert srv.nft("list", "table", "inet", "knocknft").stdout == applied
