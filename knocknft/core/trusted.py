"""always_allow's host names in the kernel: the named sets their addresses fill.

Pure. The networks of always_allow stay anonymous sets in the rules (knocknft.core.ruleset);
a host name's addresses change while the daemon runs, so they live in named sets, one per
family, refilled in one transaction whenever the names resolve differently. Only a config that
names a host has them. Each element is an address with the host name as its comment, so
`nft list set inet knocknft always_allow4` shows who is trusted and why.
"""

from __future__ import annotations

from knocknft.config import MAX_COMMENT_LENGTH, Config, IPAddress
from knocknft.core.transaction import Element, Set, Table, Transaction

ALWAYS_ALLOW4 = "always_allow4"
ALWAYS_ALLOW6 = "always_allow6"
# Addresses, not networks: a trusted list of names is short; this bounds what a resolver's
# answers can make the kernel hold.
ALWAYS_ALLOW_SET_SIZE = 65536


def always_allow_sets(table: str) -> tuple[Set, Set]:
    """The named always-allow sets (IPv4, IPv6): addresses, no timeout."""
    t = Table(table)
    return (
        Set(t, ALWAYS_ALLOW4, ("ipv4_addr",), (), None, ALWAYS_ALLOW_SET_SIZE),
        Set(t, ALWAYS_ALLOW6, ("ipv6_addr",), (), None, ALWAYS_ALLOW_SET_SIZE),
    )


def always_allow_transaction(config: Config) -> Transaction:
    """The named always-allow sets made (if missing), emptied and filled with what the host
    names resolved to, in one transaction: a trusted host is never out for a moment while they
    change. Empty when the config names no host."""
    tx = Transaction()
    if not config.options.always_allow_names:
        return tx
    four, six = always_allow_sets(config.options.table)
    for each in (four, six):
        tx.add(each).flush(each)
    seen: set[IPAddress] = set()
    for name, source in config.always_allow_resolved:
        if source not in seen:
            seen.add(source)
            named = four if source.version == 4 else six
            comment = name[:MAX_COMMENT_LENGTH]
            tx.add(Element(named.table, named.name, source, None, comment=comment))
    return tx
