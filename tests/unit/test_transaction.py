"""Transactions as data: hostile values are refused where the object is built, and the text
the renderer writes reads back as the same transaction."""

from __future__ import annotations

import ipaddress

import pytest

from knocknft.config import PortSpec
from knocknft.core.grants import Grant, grant_transaction
from knocknft.core.nftvalues import quoted
from knocknft.core.ruleset import input_chain, render_ruleset
from knocknft.core.transaction import Chain, Element, Rule, SavedTable, Set, Table, Transaction
from knocknft.nft.script import parse_script
from tests.scenarios import SCENARIOS, load_scenario, scenario_names

EVIL = 'x" } accept; add table ip evil'
A4 = ipaddress.ip_address("198.18.0.2")
T = Table("knocknft")


@pytest.mark.parametrize(
    "build",
    [
        lambda: Table(EVIL),
        lambda: Table("knocknft", "bridge"),  # type: ignore[arg-type]
        lambda: Chain(T, "input; flush ruleset"),
        lambda: Chain(T, "input", hook="input", priority="filter; flush ruleset"),
        lambda: Set(T, "allow4", ("ipv4_addr; flush ruleset",)),
        lambda: Set(T, "allow4", ("ipv4_addr",), timeout=0),
        lambda: Set(T, "allow4", ("ipv4_addr",), timeout=2**32),
        lambda: Element(T, "allow4", A4, PortSpec(22), comment=EVIL),
        lambda: Element(T, "allow4", A4, PortSpec(22), comment="ssh\nflush ruleset"),
        lambda: Element(T, "allow4", A4, PortSpec(22), timeout=30.5),  # type: ignore[arg-type]
        lambda: Element(T, "allow4", A4, PortSpec(70000)),
        lambda: Element(T, "allow4", A4, PortSpec(22, "sctp")),  # type: ignore[arg-type]
        lambda: Element(T, "allow6", ipaddress.ip_address("fe80::1%eth0"), PortSpec(22)),
        lambda: Rule(input_chain("knocknft"), 'iifname "eth0" accept; add table ip evil'),
        lambda: Rule(input_chain("knocknft"), "accept\nadd table ip evil"),
        lambda: Rule(input_chain("knocknft"), 'iifname "x accept'),
        lambda: Rule(input_chain("knocknft"), "accept # and then"),
        lambda: quoted(EVIL, "interface"),
        lambda: Transaction().note("knocknft\nflush ruleset"),
        lambda: Transaction().delete(Rule(input_chain("knocknft"), "accept")),
        lambda: Transaction().add(Set(T, "allow4")),  # a set declared without its key
    ],
)
def test_hostile_or_impossible_values_are_refused_at_construction(build: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        build()  # type: ignore[operator]


def test_an_interface_that_would_break_out_of_the_ruleset_never_reaches_it() -> None:
    """The config refuses it first; should a value get past it, the renderer refuses it too."""
    config = load_scenario(SCENARIOS / "basic")
    options = config.options.__class__(**{**config.options.__dict__, "interfaces": (EVIL,)})
    hostile = config.__class__(**{**config.__dict__, "options": options})
    with pytest.raises(ValueError, match="interface name"):
        render_ruleset(hostile)


@pytest.mark.parametrize(
    "text",
    [
        "table inet knocknft {\n}\ntable ip evil {\n}\n",  # a second table
        "table inet knocknft {\n} add table ip evil\n",  # after the block, same line
        "table inet knocknft {\n\tchain input {\n\t} } table ip evil {\n}\n",  # closed early
        "table inet other {\n}\n",  # not ours
        "flush ruleset\n",
        'table inet knocknft {\n\tchain input { comment "}" }\n}\n} flush ruleset\n',
    ],
)
def test_a_saved_table_must_be_one_block_of_our_table(text: str) -> None:
    with pytest.raises(ValueError):
        SavedTable(T, text)


def test_a_saved_table_may_carry_comments_and_quoted_braces() -> None:
    text = '# saved\ntable inet knocknft {\n\tchain input {\n\t\taccept comment "{"\n\t}\n}\n'
    assert SavedTable(T, text).declaration() == text.rstrip("\n")


@pytest.mark.parametrize("name", scenario_names())
def test_every_rendered_ruleset_reads_back_as_itself(name: str) -> None:
    text = render_ruleset(load_scenario(SCENARIOS / name))
    assert parse_script(text).render() == text


def test_grants_read_back_as_the_same_transaction() -> None:
    tx = grant_transaction("knocknft", [Grant(A4, PortSpec(53, "udp"), "dns", 60)])
    assert parse_script(tx.render()) == tx
