"""The fix for a chain that drops granted clients, in the words of the firewall that owns it.

Pure. One command a script can run as it is (`nft ...`, `iptables ...`, `ip6tables ...`): words
built from the mark bit (knocknft.core.ruleset.mark_bit), the services (checked by the config)
and table and chain names from the listing, which are used only when they are plain names
(letters, digits, `_`, `.`, `-`), so a command never holds a shell operator, a quote or a space
of someone else's making. Beside it, the lines an admin keeps across reloads (ufw's
before.rules, firewalld's ports, the file that loads an nft table), for the text output.

For a service another table DNATs (Docker's published ports), the chain is on the forward hook,
after our prerouting chain: Docker's FORWARD takes the rule in DOCKER-USER, its chain for the
admin. A chain that runs after ours accepts what our chain marked: one rule, whatever the
services, and the admin's firewall still drops every packet knocknft did not grant. A chain
that runs before ours never sees the mark; it accepts the protected services instead, which
our chain then gates, as it does for every packet.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from knocknft.config import PortSpec
from knocknft.core.ruleset import mark_bit, services_expr

# iptables-nft keeps its tables under iptables' own names, with its built-in chains in capitals.
IPTABLES_TABLES = ("filter", "mangle", "raw", "security", "nat")
IPTABLES_CHAINS = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")
# The chain Docker's FORWARD jumps to first and leaves to the admin.
DOCKER_USER = "DOCKER-USER"
_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Fixes:
    # The one command that fixes the chain now; None when its names are not plain.
    command: str | None
    # What keeps the fix across a reload of that firewall, for people to read.
    keep: tuple[str, ...] = ()
    kind: str = "nft"


@dataclass(frozen=True)
class BaseChain:
    """A base chain of another table, as doctor judges it and its fixes name it."""

    family: str
    table: str
    name: str
    hook: str
    priority: int
    policy: str


def is_iptables(chain: BaseChain) -> bool:
    """Whether iptables-nft made this chain (ufw's, Docker's, iptables-restore's)."""
    return (
        chain.family in ("ip", "ip6")
        and chain.table in IPTABLES_TABLES
        and chain.name in IPTABLES_CHAINS
    )


def fixes_for(
    chains: Mapping[tuple[str, str, str], Any],
    chain: BaseChain,
    services: tuple[PortSpec, ...],
    marked: bool,
    mark: int,
) -> Fixes:
    if not (_PLAIN_NAME.match(chain.table) and _PLAIN_NAME.match(chain.name)):
        return Fixes(None, kind="iptables" if is_iptables(chain) else "nft")
    if is_iptables(chain):
        return _iptables(chains, chain, services, marked, mark)
    return _nft(chain, services, marked, mark)


def _nft(chain: BaseChain, services: tuple[PortSpec, ...], marked: bool, mark: int) -> Fixes:
    bit = mark_bit(mark)
    # `and`, not `&`: the same match to nft, and nothing a shell would act on.
    body = (
        f"meta mark and {bit} == {bit} accept"
        if marked
        else f"meta l4proto . th dport {services_expr(services)} accept"
    )
    command = f"nft insert rule {chain.family} {chain.table} {chain.name} {body}"
    if chain.family == "inet" and chain.table == "firewalld":
        # firewalld rebuilds its table on every reload; its own ports stay. Opening the
        # protected ports there is safe while knocknft's table gates them (knocknft guard
        # loads it at boot).
        ports = [f"firewall-cmd --permanent --add-port={p.port}/{p.protocol}" for p in services]
        return Fixes(command, (*ports, "firewall-cmd --reload"), "firewalld")
    keep = (
        f"to keep it, add `{body.replace(' and ', ' & ')}` as the first rule of chain "
        f"{chain.name} in table {chain.family} {chain.table} where it is written (Debian: "
        "/etc/nftables.conf)",
    )
    return Fixes(command, keep)


def _iptables(
    chains: Mapping[tuple[str, str, str], Any],
    chain: BaseChain,
    services: tuple[PortSpec, ...],
    marked: bool,
    mark: int,
) -> Fixes:
    tool = "iptables" if chain.family == "ip" else "ip6tables"
    table = "" if chain.table == "filter" else f"-t {chain.table} "
    if marked:
        bit = mark_bit(mark)
        match = f"-m mark --mark {bit}/{bit}"
    else:
        # One protocol per finding (knocknft.core.doctor splits them): multiport takes one.
        protocol = services[0].protocol
        ports = ",".join(str(p.port) for p in services if p.protocol == protocol)
        match = f"-p {protocol} -m multiport --dports {ports}"
    if chain.name == "FORWARD" and (chain.family, chain.table, DOCKER_USER) in chains:
        # Docker puts its own FORWARD rules back in front on every restart and leaves
        # DOCKER-USER, which FORWARD jumps to first, to the admin.
        rules = "rules.v4" if chain.family == "ip" else "rules.v6"
        keep = (
            f"Docker: to keep it across reboots, save it with the rest of your rules "
            f"(iptables-persistent: /etc/iptables/{rules})",
        )
        return Fixes(f"{tool} {table}-I {DOCKER_USER} {match} -j ACCEPT", keep, "docker")
    command = f"{tool} {table}-I {chain.name} {match} -j ACCEPT"
    prefix = "ufw" if chain.family == "ip" else "ufw6"
    if (chain.family, chain.table, f"{prefix}-before-input") in chains and chain.hook == "input":
        rules = "before.rules" if chain.family == "ip" else "before6.rules"
        keep = (
            f"ufw: to keep it, add `-A {prefix}-before-input {match} -j ACCEPT` to "
            f"/etc/ufw/{rules} after the line `# End required lines`, then `ufw reload`",
        )
        return Fixes(command, keep, "ufw")
    return Fixes(command, (), "iptables")
