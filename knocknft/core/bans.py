"""Bans: one deny-set element = a knocker's address, with a timeout and the banning door's name.

Pure, as knocknft.core.grants is for the allowlist: the deny sets' names and declarations, the
transactions that add (or refresh) and lift bans, and the parse of the kernel's JSON listing
back into bans. A door with `deny_for` bans instead of granting (knockd's "banned" doors);
`deny` says from what: `services` (the deny sets the rules match with the protected services)
or `host` (the sets whose rule drops every packet). Every element carries its own timeout, so
a ban ends in the kernel with no daemon.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from knocknft.config import MAX_BAN_SECONDS, DenyScope, IPAddress
from knocknft.core.nftvalues import check_seconds
from knocknft.core.transaction import Element, Set, Table, Transaction

# (scope, family) -> set name. knocknft.core.ruleset declares them and writes their rules.
DENY_SETS: dict[tuple[DenyScope, int], str] = {
    ("services", 4): "deny4",
    ("services", 6): "deny6",
    ("host", 4): "deny_host4",
    ("host", 6): "deny_host6",
}
# Bounds the kernel memory bans take. A full set refuses new bans (logged); it never touches a
# grant, so forged completions of a banning door cannot lock knockers out of the allowlist.
DENY_SET_SIZE = 65536
# The set-wide fallback for an element added without a timeout (knocknft never adds one).
DENY_FALLBACK_TIMEOUT = 3600


@dataclass(frozen=True)
class Ban:
    """A source on a deny list. `expires` is seconds left, as last read."""

    address: IPAddress
    door: str
    timeout: int
    scope: DenyScope = "services"
    expires: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "address": str(self.address),
            "family": f"ipv{self.address.version}",
            "door": self.door,
            "deny": self.scope,
            "timeout": self.timeout,
            "expires_in": self.expires,
        }


def deny_sets(table: str) -> list[Set]:
    """The four deny sets, keyed by address alone, each element with a timeout."""
    t = Table(table)
    return [
        Set(
            t,
            name,
            ("ipv4_addr" if family == 4 else "ipv6_addr",),
            ("timeout",),
            DENY_FALLBACK_TIMEOUT,
            DENY_SET_SIZE,
        )
        for (_, family), name in DENY_SETS.items()
    ]


def _element(table: Table, ban: Ban, **extra: Any) -> Element:
    return Element(table, DENY_SETS[ban.scope, ban.address.version], ban.address, None, **extra)


def ban_transaction(table: str, bans: Iterable[Ban]) -> Transaction:
    """Add or refresh bans atomically, as grants are: add, delete, add with the new timeout."""
    t = Table(table)
    tx = Transaction()
    for ban in bans:
        timeout = check_seconds(ban.timeout, MAX_BAN_SECONDS)
        tx.add(_element(t, ban, timeout=timeout)).delete(_element(t, ban))
        tx.add(_element(t, ban, timeout=timeout, comment=ban.door))
    return tx


def lift_transaction(table: str, bans: Iterable[Ban]) -> Transaction:
    """Lift bans, whether or not they (still) exist: add a 1 s element, then delete it."""
    t = Table(table)
    tx = Transaction()
    for ban in bans:
        tx.add(_element(t, ban, timeout=1)).delete(_element(t, ban))
    return tx


def parse_deny_listing(listing: Mapping[str, Any]) -> list[Ban]:
    """Bans from `nft -j list set ...` output of deny sets, IPv4 first, then by address."""
    scopes = {name: scope for (scope, _), name in DENY_SETS.items()}
    bans = []
    for item in listing.get("nftables", []):
        nft_set = item.get("set") if isinstance(item, dict) else None
        if not isinstance(nft_set, dict) or nft_set.get("name") not in scopes:
            continue
        default_timeout = int(nft_set.get("timeout", 0))
        for entry in nft_set.get("elem", []):
            ban = _parse_elem(entry, scopes[nft_set["name"]], default_timeout)
            if ban is not None:
                bans.append(ban)
    return sorted(bans, key=lambda b: (b.address.version, b.address, b.scope))


def _parse_elem(entry: Any, scope: DenyScope, default_timeout: int) -> Ban | None:
    # nft lists an element with neither timeout nor comment as its bare value.
    elem = entry.get("elem") if isinstance(entry, dict) else {"val": entry}
    if not isinstance(elem, dict) or not isinstance(elem.get("val"), str):
        return None
    try:
        address = ipaddress.ip_address(elem["val"])
    except ValueError:
        return None
    return Ban(
        address,
        str(elem.get("comment", "")),
        int(elem.get("timeout", default_timeout)),
        scope,
        int(elem["expires"]) if "expires" in elem else None,
    )
