"""Rendering: each folder under tests/data/render holds a config and the nft script it must give.

Set KNOCKNFT_UPDATE_GOLDEN=1 to rewrite the expected files after an intended change, then review
the diff. tests/integration/test_ruleset.py loads every expected script into a real kernel.
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from knocknft.core.ruleset import render_ruleset
from tests.scenarios import SCENARIOS, load_scenario, scenario_names


@pytest.mark.parametrize("name", scenario_names())
def test_render_matches_expected(name: str) -> None:
    folder = SCENARIOS / name
    rendered = render_ruleset(load_scenario(folder))
    expected = folder / "expected.nft"
    if os.environ.get("KNOCKNFT_UPDATE_GOLDEN") == "1":
        expected.write_text(rendered)
    assert rendered == expected.read_text()


def test_render_touches_only_our_table() -> None:
    for name in scenario_names():
        cfg = load_scenario(SCENARIOS / name)
        for line in render_ruleset(cfg).splitlines():
            if line and not line.startswith("#"):
                assert f"inet {cfg.options.table}" in line, line
                assert not line.startswith(("flush ruleset", "flush table", "delete table")), line


def test_sets_are_only_added_so_reapply_keeps_grants() -> None:
    text = render_ruleset(load_scenario(SCENARIOS / "basic"))
    set_lines = [
        line
        for line in text.splitlines()
        if (" set " in line or "element" in line) and not line.startswith("add rule ")
    ]
    assert set_lines and all(line.startswith("add set ") for line in set_lines)


def test_sessions_end_before_the_established_accept_and_spare_always_allow() -> None:
    lines = render_ruleset(load_scenario(SCENARIOS / "close-sessions")).splitlines()
    # Both gates end sessions: input for local services, prerouting for forwarded ones.
    for chain in ("input", "prerouting"):
        prefix = f"add rule inet knocknft {chain} "
        established = lines.index(prefix + "ct state established,related accept")
        sessions = [
            i
            for i, line in enumerate(lines)
            if line.startswith(prefix) and 'comment "close_sessions"' in line
        ]
        assert len(sessions) == 4 and max(sessions) < established
        for i in sessions:
            assert "saddr != {" in lines[i], "an always_allow network's connection is never ended"
            assert "iifname" not in lines[i], "sessions end on every interface, as grants do"
        assert not any("8443" in lines[i] for i in sessions), "only doors that ask for it"


def test_forwarded_services_are_gated_before_dnat_and_knocks_logged_once() -> None:
    lines = render_ruleset(load_scenario(SCENARIOS / "basic")).splitlines()
    prefix = "add rule inet knocknft prerouting "
    chain = [line.removeprefix(prefix) for line in lines if line.startswith(prefix)]
    assert (
        "add chain inet knocknft prerouting { type filter hook prerouting priority dstnat - 10;"
        in ("\n".join(lines))
    )
    # Other ports and routed traffic leave the chain before anything can drop them.
    assert chain[:3] == [
        'iif "lo" accept',
        "meta l4proto . th dport != { tcp . 22 } accept",
        "fib daddr type != local accept",
    ]
    assert chain[-1].endswith('drop comment "protected"') and "mark set" in chain[-2]
    assert sum("log group" in line for line in lines) == 1, "knocks are logged by input only"


def test_loopback_among_the_interfaces_hears_knocks_and_gates_services_there() -> None:
    """The one-machine lab (`run -i lo`): nothing lets loopback through before the knock rule or
    the gate; by default loopback is accepted first in both chains, as before."""
    config = load_scenario(SCENARIOS / "basic")

    def rules(interfaces: tuple[str, ...]) -> list[str]:
        options = dataclasses.replace(config.options, interfaces=interfaces)
        text = render_ruleset(dataclasses.replace(config, options=options))
        return [line for line in text.splitlines() if line.startswith("add rule ")]

    lab = rules(("lo",))
    assert not any('iif "lo"' in line for line in lab)
    assert any('iifname { "lo" } ' in line and "log group" in line for line in lab)
    assert sum('drop comment "protected"' in line for line in lab) == 2  # input and prerouting
    for interfaces in ((), ("eth0",), ("lo0",)):
        default = rules(interfaces)
        loopback = [line for line in default if line.endswith(' iif "lo" accept')]
        assert [line.split()[4] for line in loopback] == ["input", "prerouting"]
        assert default.index(loopback[0]) < next(
            i for i, line in enumerate(default) if "log group" in line
        )


def test_a_config_without_protected_services_removes_the_prerouting_chain() -> None:
    lines = render_ruleset(load_scenario(SCENARIOS / "commands-only")).splitlines()
    assert "delete chain inet knocknft prerouting" in lines
    assert not any(line.startswith("add rule inet knocknft prerouting") for line in lines)
