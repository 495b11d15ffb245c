"""Grants written as raw set-element batches land exactly as the nft script would put them."""

from __future__ import annotations

import ipaddress
from typing import Any

from knocklab.lab import Lab, run_in_netns
from knocknft.config import PortSpec, load_config
from knocknft.core.grants import Grant, grant_transaction
from knocknft.core.ruleset import ruleset_transaction
from knocknft.core.transaction import Table, Transaction
from knocknft.errors import TableMissing
from knocknft.netlink.setelem import SetElementSocket
from knocknft.nft.libnft import LibNft
from knocknft.nft.queries import read_grants
from tests.integration.support import EXAMPLE_CONFIG

GRANTS = [
    Grant(ipaddress.ip_address("198.18.0.2"), PortSpec(22, "tcp"), "ssh", 300),
    Grant(ipaddress.ip_address("2001:db8::2"), PortSpec(22, "tcp"), "ssh", 300),
    Grant(ipaddress.ip_address("198.18.0.3"), PortSpec(53, "udp"), "dns", 60),
]


def grants_both_ways() -> dict[str, Any]:
    """Grant once through the script and once directly, each into a freshly applied table."""
    config = load_config(EXAMPLE_CONFIG).config
    nft = LibNft()
    direct = SetElementSocket()
    seen: dict[str, Any] = {}
    for way in ("script", "direct"):
        table = Table("knocknft")
        nft.apply(Transaction().add(table).delete(table))
        nft.apply(ruleset_transaction(config))
        if way == "script":
            nft.apply(grant_transaction("knocknft", GRANTS))
        else:
            # The socket itself, not LibNft.grant, which would fall back to the script.
            direct.grant("knocknft", GRANTS)
        seen[way] = [
            (str(g.address), str(g.service), g.door, g.timeout)
            for g in read_grants(nft, "knocknft")
        ]
    # A refresh restarts the timer: a shorter grant, then a longer one, leaves the longer.
    short = Grant(GRANTS[0].address, GRANTS[0].service, "ssh", 5)
    direct.grant("knocknft", [short])
    direct.grant("knocknft", [GRANTS[0]])
    seen["refreshed"] = [
        g.timeout for g in read_grants(nft, "knocknft") if g.address == short.address
    ]
    # Hundreds of grants in one transaction (a restore after `nft flush ruleset`, say): one ack,
    # so the answers cannot overflow the socket.
    many = [
        Grant(
            ipaddress.ip_address(f"198.18.{2 + i // 250}.{i % 250 + 1}"),
            PortSpec(22, "tcp"),
            "ssh",
            60,
        )
        for i in range(1000)
    ]
    direct.grant("knocknft", many)
    seen["many"] = len(read_grants(nft, "knocknft"))
    try:
        direct.grant("missing", GRANTS)
    except TableMissing as exc:
        seen["missing"] = str(exc)
    return seen


def test_direct_grants_equal_the_scripted_ones(lab: Lab) -> None:
    seen = run_in_netns(lab.server.netns, grants_both_ways)
    assert isinstance(seen, dict)
    assert seen["direct"] == seen["script"]
    assert len(seen["direct"]) == len(GRANTS)
    assert seen["refreshed"] == [300]
    assert "missing" in seen["missing"]
    assert seen["many"] == len(GRANTS) + 1000


def ssh_grant(host: int, seconds: int = 60) -> Grant:
    return Grant(ipaddress.ip_address(f"198.18.0.{host}"), PortSpec(22, "tcp"), "ssh", seconds)


def fill_a_small_set() -> dict[str, Any]:
    """A table whose allow4 holds 4 elements, filled one batch at a time through both ways."""
    seen: dict[str, Any] = {}
    for way in ("direct", "script"):
        nft = LibNft()
        if way == "script":
            nft._elements_off = True  # the script's way, as after the short way was given up
        table = Table("small")
        nft.apply(Transaction().add(table).delete(table))
        nft.load_script(
            "add table inet small\n"
            "add set inet small allow4 { type ipv4_addr . inet_proto . inet_service; "
            "flags timeout; size 4; }\n"
            "add set inet small allow6 { type ipv6_addr . inet_proto . inet_service; "
            "flags timeout; size 4; }\n"
        )
        first = nft.grant("small", [ssh_grant(h) for h in (1, 2, 3)])
        # Two new grants for one free slot, and a refresh, which takes no room.
        second = nft.grant("small", [ssh_grant(4), ssh_grant(5), ssh_grant(1, 300)])
        # A grant that evicts another in the same transaction fits in the full set.
        third = nft.grant("small", [ssh_grant(6)], [(ssh_grant(2).address, PortSpec(22, "tcp"))])
        seen[way] = {
            "first": first,
            "second": [
                (str(r.grant.address), type(r.error).__name__, str(r.error)) for r in second
            ],
            "third": third,
            "left": sorted((str(g.address), g.timeout) for g in read_grants(nft, "small")),
            "fast path on": not nft._elements_off,
        }
    return seen


def test_a_full_set_refuses_only_the_grants_beyond_it_and_says_so(lab: Lab) -> None:
    seen = run_in_netns(lab.server.netns, fill_a_small_set)
    assert isinstance(seen, dict)
    for way in ("direct", "script"):
        outcome = seen[way]
        assert outcome["first"] == []
        ((address, kind, text),) = outcome["second"]
        assert (address, kind) == ("198.18.0.5", "SetFull"), way
        assert "full" in text
        assert outcome["third"] == []
        # The refused grant alone is missing; the refresh went in with its new timeout.
        assert outcome["left"] == [
            ("198.18.0.1", 300),
            ("198.18.0.3", 60),
            ("198.18.0.4", 60),
            ("198.18.0.6", 60),
        ], way
    # A full set proves nothing against the short way: it stays.
    assert seen["direct"]["fast path on"]
