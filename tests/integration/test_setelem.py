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
