"""Reads through an `Nft`: our table (its grants, whether it is there, its chains and how many
rules they hold) and the whole ruleset, as `knocknft doctor` judges it.

Every command is built from checked names (knocknft.core.transaction), so a table name from a
marker file or the command line cannot widen a listing to something else.
"""

from __future__ import annotations

from typing import Any

from knocknft.config import Config
from knocknft.core.bans import DENY_SETS, Ban, parse_deny_listing
from knocknft.core.doctor import describe, diagnose
from knocknft.core.grants import ALLOW4, ALLOW6, Grant, parse_set_listing, sort_grants
from knocknft.core.nftvalues import check_name
from knocknft.core.transaction import Table
from knocknft.errors import NftError, TableMissing
from knocknft.nft.libnft import Nft


def read_grants(nft: Nft, table: str) -> list[Grant]:
    """Every grant in our two sets. Raises TableMissing if the table is not loaded."""
    t = Table(table)
    grants: list[Grant] = []
    try:
        for name in (ALLOW4, ALLOW6):
            command = f"list set {t.family} {t.name} {check_name(name, 'set name')}"
            grants += parse_set_listing(nft.list_json(command))
    except TableMissing as exc:
        raise table_missing(table) from exc
    return sort_grants(grants)


def read_bans(nft: Nft, table: str) -> list[Ban]:
    """Every ban in our deny sets; a set a table applied by an older knocknft lacks holds none.
    Raises TableMissing if the table is not loaded."""
    if not table_exists(nft, table):
        raise table_missing(table)
    t = Table(table)
    listing: dict[str, Any] = {"nftables": []}
    for name in DENY_SETS.values():
        command = f"list set {t.family} {t.name} {check_name(name, 'set name')}"
        try:
            listing["nftables"] += nft.list_json(command).get("nftables", [])
        except TableMissing:
            continue
    return parse_deny_listing(listing)


def table_missing(table: str) -> TableMissing:
    return TableMissing(f"table inet {table} is not loaded: run `knocknft apply` first")


def chain_names(nft: Nft, table: str) -> list[str]:
    """The chains of our table as the kernel has them now; none when the table is missing."""
    t = Table(table)
    listing = nft.list_json(f"list chains {t.family}")
    return [
        item["chain"]["name"]
        for item in listing.get("nftables", [])
        if isinstance(item, dict)
        and isinstance(item.get("chain"), dict)
        and item["chain"].get("table") == t.name
    ]


def rule_counts(nft: Nft, table: str) -> dict[str, int]:
    """How many rules each chain of our table holds; listed chain by chain, as a listing of the
    table would read every element of its sets."""
    t = Table(table)
    counts: dict[str, int] = {}
    for name in chain_names(nft, table):
        listing = nft.list_json(f"list chain {t.family} {t.name} {check_name(name, 'chain name')}")
        counts[name] = sum(
            isinstance(item, dict) and "rule" in item for item in listing.get("nftables", [])
        )
    return counts


def table_listed(nft: Nft, table: str) -> bool:
    """Whether our table exists, asking only for the list of tables: cheap enough to poll, as
    it reads no set element."""
    t = Table(table)
    listing = nft.list_json(f"list tables {t.family}")
    return any(
        isinstance(item, dict)
        and isinstance(item.get("table"), dict)
        and item["table"].get("name") == t.name
        for item in listing.get("nftables", [])
    )


def table_exists(nft: Nft, table: str) -> bool:
    try:
        nft.list_json(f"list {Table(table).reference()}")
    except TableMissing:
        return False
    return True


def read_ruleset(nft: Nft) -> dict[str, Any]:
    """The whole ruleset, every table of every family (iptables-nft's too): what doctor judges."""
    return nft.list_json("list ruleset")


def doctor_warnings(nft: Nft, config: Config) -> list[str]:
    """What still stops a granted client, as warnings for apply, run and status: never a
    failure of their own, as the table is in place and the admin fixes the rest."""
    try:
        return [describe(f) for f in diagnose(read_ruleset(nft), config)]
    except NftError as exc:
        return [f"cannot read the ruleset to check it alongside other firewalls: {exc}"]
