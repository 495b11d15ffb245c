"""An interface the host does not have is an error at its line (a warning for another host), but
for one listed in late_interfaces; and `interfaces` only limits where knocks are heard."""

from __future__ import annotations

import pytest

from knocknft.config import HostInterfaces, parse_config
from knocknft.core.ruleset import render_ruleset
from knocknft.errors import ConfigError
from knocknft.knockd.grammar import read_knockd_conf

HOST = HostInterfaces(frozenset({"lo", "eth0", "wg3"}))
DOOR = "doors:\n  ssh:\n    sequence: [7000, 9000/udp, 8000]\n    open: [22]\n    open_for: 30s\n"


def config(options: str) -> str:
    return f"options:\n{options}{DOOR}"


@pytest.mark.parametrize(
    ("options", "line", "key"),
    [
        ("  interfaces: [eth0, eht0]\n", 2, "options.interfaces[1]"),
        ("  interfaces:\n    - eth0\n    - ppp*\n", 4, "options.interfaces[1]"),
        ("  interfaces: [wg0]\n  late_interfaces: [wg1]\n", 3, "options.late_interfaces[0]"),
    ],
)
def test_an_interface_missing_here_is_an_error_at_its_line(
    options: str, line: int, key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config(options), "c.yaml", host=HOST)
    problem = caught.value.problems[0]
    assert (problem.line, problem.key) == (line, key)


def test_the_error_names_the_interfaces_the_host_has() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config("  interfaces: [eht0]\n"), "c.yaml", host=HOST)
    assert "'eht0' does not exist on this host (it has: eth0, lo, wg3)" in str(caught.value)


@pytest.mark.parametrize(
    "options",
    [
        "  interfaces: [eth0, wg*]\n",
        "  interfaces: [wg0]\n  late_interfaces: [wg0]\n",
        "  late_interfaces: [ppp0]\n  interfaces: [ppp0, eth0]\n",
        "",
    ],
)
def test_existing_wildcard_and_late_interfaces_are_accepted(options: str) -> None:
    parse_config(config(options) if options else DOOR, "c.yaml", host=HOST)


def test_for_another_host_a_missing_interface_is_a_warning() -> None:
    other = HostInterfaces(HOST.names, strict=False)
    loaded = parse_config(config("  interfaces: [eht0]\n"), "c.yaml", host=other)
    assert [w.key for w in loaded.warnings if "does not exist" in w.message] == [
        "options.interfaces[0]"
    ]


def test_knockd_conf_interface_must_exist() -> None:
    text = "[options]\n  Interface = eht0\n[a]\n  Sequence = 1,2,3\n  Command = /bin/true\n"
    with pytest.raises(ConfigError) as caught:
        read_knockd_conf(text, "k.conf", host=HOST)
    assert caught.value.problems[0].line == 2
    assert read_knockd_conf(text.replace("eht0", "eth0"), "k.conf", host=HOST)


def test_interfaces_limit_only_the_knock_rule() -> None:
    script = render_ruleset(parse_config(config("  interfaces: [eth0]\n")).config)
    rules = [line for line in script.splitlines() if line.startswith("add rule")]
    limited = [line for line in rules if "iifname" in line]
    assert len(limited) == 1 and "log group" in limited[0]
    assert any('drop comment "protected"' in line for line in rules)
