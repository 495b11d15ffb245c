"""Grants: one allowlist element = (client address, service) with a timeout and the door's name.

Pure: the text side of an element, both ways: the transactions that add, refresh and remove
elements (rendered by knocknft.core.transaction), and the parse of the kernel's JSON listing of
the sets back into grants. (The binary netlink form is knocknft.netlink's.) Every element this
module renders carries an explicit integer timeout; that is checked here, because libnftables
1.0.6 silently makes an element permanent when its JSON timeout is a string or a float.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from knocknft.config import MAX_GRANT_SECONDS, IPAddress, PortSpec
from knocknft.core.nftvalues import check_seconds
from knocknft.core.transaction import Element, Table, Transaction
from knocknft.errors import NftError

# The allowlist sets, one per family, in our table (knocknft.core.ruleset declares them).
ALLOW4 = "allow4"
ALLOW6 = "allow6"


@dataclass(frozen=True)
class Grant:
    """An (address, service) pair in the allowlist. `expires` is seconds left, as last read."""

    address: IPAddress
    service: PortSpec
    door: str
    timeout: int
    expires: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "address": str(self.address),
            "family": f"ipv{self.address.version}",
            "door": self.door,
            "service": str(self.service),
            "port": self.service.port,
            "protocol": self.service.protocol,
            "timeout": self.timeout,
            "expires_in": self.expires,
        }


class Refusal(NamedTuple):
    """One grant the kernel would not add, and why; the other grants of its call went in."""

    grant: Grant
    error: NftError


def check_timeout(timeout: object) -> int:
    """The only timeouts we let near the kernel: whole seconds, 1 .. MAX_GRANT_SECONDS."""
    return check_seconds(timeout, MAX_GRANT_SECONDS)


def set_for(address: IPAddress) -> str:
    return ALLOW4 if address.version == 4 else ALLOW6


def _element(table: Table, address: IPAddress, service: PortSpec, **extra: Any) -> Element:
    return Element(table, set_for(address), address, service, **extra)


def grant_transaction(table: str, grants: Iterable[Grant]) -> Transaction:
    """Add or refresh grants atomically: add (no-op if present), delete, add with the new timeout.

    A plain `add element` leaves an existing element's timer untouched, so a refresh has to replace
    it; the leading add makes the delete valid whether or not the element exists.
    """
    t = Table(table)
    tx = Transaction()
    for g in grants:
        timeout = check_timeout(g.timeout)
        tx.add(_element(t, g.address, g.service, timeout=timeout))
        tx.delete(_element(t, g.address, g.service))
        tx.add(_element(t, g.address, g.service, timeout=timeout, comment=g.door))
    return tx


def revoke_transaction(table: str, keys: Iterable[tuple[IPAddress, PortSpec]]) -> Transaction:
    """Remove elements, whether or not they (still) exist: add a 1 s element, then delete it."""
    t = Table(table)
    tx = Transaction()
    for address, service in keys:
        tx.add(_element(t, address, service, timeout=1)).delete(_element(t, address, service))
    return tx


def render_grant(table: str, grants: Iterable[Grant]) -> str:
    return grant_transaction(table, grants).render()


def render_revoke(table: str, keys: Iterable[tuple[IPAddress, PortSpec]]) -> str:
    return revoke_transaction(table, keys).render()


def parse_set_listing(listing: Mapping[str, Any]) -> list[Grant]:
    """Grants from `nft -j list set ...` output (one or more sets), sorted by address."""
    grants: list[Grant] = []
    for item in listing.get("nftables", []):
        nft_set = item.get("set") if isinstance(item, dict) else None
        if not isinstance(nft_set, dict):
            continue
        # nft omits an element's timeout when it equals the set's default.
        default_timeout = int(nft_set.get("timeout", 0))
        for entry in nft_set.get("elem", []):
            grant = _parse_elem(entry, default_timeout)
            if grant is not None:
                grants.append(grant)
    return sort_grants(grants)


def sort_grants(grants: Iterable[Grant]) -> list[Grant]:
    """Status order: IPv4 before IPv6, then by address and service."""
    return sorted(grants, key=lambda g: (g.address.version, g.address, g.service))


def _parse_elem(entry: Any, default_timeout: int) -> Grant | None:
    elem = entry.get("elem") if isinstance(entry, dict) else None
    if not isinstance(elem, dict):
        return None
    concat = elem.get("val", {}).get("concat") if isinstance(elem.get("val"), dict) else None
    if not isinstance(concat, list) or len(concat) != 3:
        return None
    address_text, proto, port = concat
    try:
        address = ipaddress.ip_address(address_text)
    except ValueError:
        return None
    if proto not in ("tcp", "udp") or not isinstance(port, int):
        return None
    return Grant(
        address=address,
        service=PortSpec(port, proto),
        door=str(elem.get("comment", "")),
        timeout=int(elem.get("timeout", default_timeout)),
        expires=int(elem["expires"]) if "expires" in elem else None,
    )
