"""The ruleset: config -> the transaction that installs our one table (and its nft text).

Pure. `options.interfaces` limits where knocks are heard, nothing else: the protected services
are dropped for sources without a grant on every interface, so a mistyped or missing interface
can only keep a door shut, never leave a service open. Loopback is let through first, unless the
interfaces name `lo` (knocknft.core.sources.hears_loopback): then knocks on it count and the
services are gated on it like anywhere else.

Rule bodies are text built here from values checked by knocknft.core.transaction (names,
interfaces, addresses, ports, quoted comments) or this module's constants; that module's
docstring states the invariant. The transaction is written so that re-applying it keeps the
allowlist sets and their elements: the sets are only ever `add`ed (a no-op for an existing set,
which also updates its default timeout), while the chains are emptied, deleted and recreated,
so their hooks, priorities and rules always match the config. Nothing outside our table is named.
"""

from __future__ import annotations

from collections.abc import Iterable

from knocknft import __version__
from knocknft.config import (
    MAX_COMMENT_LENGTH,
    MAX_PORT,
    MAX_RATE,
    Config,
    Door,
    IPAddress,
    PortSpec,
    RateLimit,
)
from knocknft.core.bans import DENY_SETS, deny_sets
from knocknft.core.grants import ALLOW4, ALLOW6
from knocknft.core.nftvalues import address, check_count, check_interface, networks, quoted, service
from knocknft.core.sources import hears_loopback
from knocknft.core.spa_rules import spa_rules
from knocknft.core.transaction import Chain, Rule, Set, Table, Transaction
from knocknft.core.trusted import ALWAYS_ALLOW4, ALWAYS_ALLOW6, always_allow_transaction
from knocknft.errors import InvalidValue

INPUT_CHAIN = "input"
# Before the usual filter chains (priority 0), so knock packets are consumed first.
INPUT_PRIORITY = "filter - 10"
INPUT_PRIORITY_VALUE = -10  # the same, as a number (filter is 0): how listings show it
# The gate for forwarded services: before any DNAT (Docker's published ports, a router's port
# forwards, at dstnat), while the packet still carries the address and port it was sent to.
PREROUTING_CHAIN = "prerouting"
PREROUTING_PRIORITY = "dstnat - 10"
PREROUTING_PRIORITY_VALUE = -110  # the same, as a number (dstnat is -100)
# options.knock_reply: reject. Knock packets are answered from this regular chain, which the knock
# rules jump to once the packet is logged. Its one `limit` is shared by every source: the
# replies go to whatever source a packet claims, so a forged flood must not turn the host into
# a reflector. A blocking connect needs one reply; knocks over the limit are dropped, as with
# knock_reply: drop, and still counted (they were logged before the jump).
KNOCK_REPLY_CHAIN = "knock_reply"
KNOCK_REPLY_RATE = 20  # replies per second, for all sources together
KNOCK_REPLY_BURST = 20
# Enough to hold IPv4/IPv6 headers, a few extension headers and the TCP/UDP header.
NFLOG_SNAPLEN = 128
# Bounds kernel memory for grants; each element is one (address, service) pair.
ALLOW_SET_SIZE = 65536
# A set-wide default timeout is the kernel-side guard behind our own rule that every element
# carries a timeout: an element added without one (by a buggy writer) still expires.
FALLBACK_TIMEOUT = 3600
LOOPBACK_ACCEPT = 'iif "lo" accept'
# The first words of every script: how a saved copy is recognised as ours (knocknft.nft.lastgood).
HEADER = "# knocknft "

# options.knock_rate_limit: the kernel keeps one token bucket per source in these dynamic sets.
KNOCK_RATE4 = "knock_rate4"
KNOCK_RATE6 = "knock_rate6"
# When a set is full the kernel adds no element and the rule does not match: new sources go on
# to the daemon unlimited, whose own attempt cap then bounds what they cost. The limit only
# ever fails open, so it can never lock a knocker out.
KNOCK_RATE_SET_SIZE = 65536
# IPv6 sources are limited per /64, the block one host or LAN gets: a single attacker holds
# 2^64 addresses, so a limit per address would limit nothing.
IPV6_RATE_MASK = "ffff:ffff:ffff:ffff::"


def services_expr(ports: Iterable[PortSpec]) -> str:
    """An anonymous set of `proto . port` pairs, sorted so output is stable."""
    items = ", ".join(service(p) for p in sorted(ports))
    return f"{{ {items} }}"


def _quoted_set(names: Iterable[str]) -> str:
    return "{ " + ", ".join(quoted(check_interface(n), "interface") for n in names) + " }"


def _daddr_match(target: IPAddress | None) -> str:
    if target is None:
        return ""
    return (
        f"ip daddr {address(target)} " if target.version == 4 else f"ip6 daddr {address(target)} "
    )


def mark_bit(value: object) -> str:
    """options.grant_mark as nft and iptables read it: one bit, in hex."""
    if not isinstance(value, int) or value <= 0 or value >= 2**32 or value & (value - 1):
        raise InvalidValue(f"{value!r} is not a single mark bit")
    return f"{value:#010x}"


def set_mark(value: int) -> str:
    """Sets our bit and keeps every other one: other tools' marks stay as they were."""
    return f"meta mark set meta mark | {mark_bit(value)}"


def set_default_timeout(config: Config) -> int:
    longest = [d.open_for for d in config.doors if d.open_for is not None]
    return max(longest, default=FALLBACK_TIMEOUT)


def allow_sets(table: str, timeout: int = FALLBACK_TIMEOUT) -> tuple[Set, Set]:
    """The two allowlist sets (IPv4, IPv6): (address . protocol . port) with a timeout each."""
    t = Table(table)
    return tuple(  # type: ignore[return-value]
        Set(
            t,
            name,
            (addr_type, "inet_proto", "inet_service"),
            ("timeout",),
            timeout,
            ALLOW_SET_SIZE,
        )
        for name, addr_type in ((ALLOW4, "ipv4_addr"), (ALLOW6, "ipv6_addr"))
    )


def input_chain(table: str) -> Chain:
    return Chain(Table(table), INPUT_CHAIN, hook="input", priority=INPUT_PRIORITY)


def knock_reply_chain(table: str) -> Chain:
    return Chain(Table(table), KNOCK_REPLY_CHAIN)


def prerouting_chain(table: str) -> Chain:
    return Chain(Table(table), PREROUTING_CHAIN, hook="prerouting", priority=PREROUTING_PRIORITY)


def render_ruleset(config: Config) -> str:
    """The whole table as an nft script: one atomic transaction."""
    return ruleset_transaction(config).render()


def ruleset_transaction(config: Config) -> Transaction:
    """The whole table as one transaction (see the module docstring for why in this order)."""
    opts = config.options
    table = Table(opts.table)
    iif = f"iifname {_quoted_set(opts.interfaces)} " if opts.interfaces else ""
    tx = Transaction()
    tx.note(f"{HEADER[2:]}{__version__}: {table.reference()}, rendered from {config.source}.")
    tx.note("Generated: edit the config and run `knocknft apply`, not this text.")
    tx.add(table)
    # The sets that hold grants and bans are only ever added: their elements outlive a reapply.
    for kept in (*allow_sets(opts.table, set_default_timeout(config)), *deny_sets(opts.table)):
        tx.add(kept)
    tx.extend(always_allow_transaction(config))
    chain = input_chain(opts.table)
    prerouting = prerouting_chain(opts.table)
    reply = knock_reply_chain(opts.table)
    # add+flush+delete+add: works whether or not the chain exists, in one transaction. The
    # reply chain goes after input, whose rules jump to it.
    for each in (chain, prerouting, reply):
        tx.add(each).flush(each).delete(each)
    limit = opts.knock_rate_limit
    if limit is not None:
        _rate_sets(tx, table, limit)
    if opts.knock_reply == "reject":
        tx.add(reply)
        for body in _reply_rules():
            tx.add(Rule(reply, body))
    tx.add(chain)
    protected = config.protected
    if protected:
        tx.add(prerouting)
    bodies = _loopback_rules(config)
    # Bans first: a banned source's packets go nowhere, its open connections and knocks too.
    bodies += _deny_rules(config)
    # Before the established accept, or a connection would outlive its grant (close_sessions).
    bodies += _session_rules(config)
    bodies.append("ct state established,related accept")
    bodies += _knock_rules(config, iif)
    bodies += spa_rules(config, iif)
    bodies += _gate_rules(config)
    for body in bodies:
        tx.add(Rule(chain, body))
    if protected:
        for body in _prerouting_rules(config):
            tx.add(Rule(prerouting, body))
    return tx


def _knock_rules(config: Config, iif: str) -> list[str]:
    """Knocks to the daemon (NFLOG), then dropped or answered (options.knock_reply): one rule
    per distinct door target. Logged first either way: a reply never costs a knock."""
    opts = config.options
    limit = opts.knock_rate_limit
    log = f"log group {opts.nflog_group} snaplen {NFLOG_SNAPLEN} queue-threshold 1"
    verdict = f"jump {KNOCK_REPLY_CHAIN}" if opts.knock_reply == "reject" else "drop"
    bodies = []
    # SPA doors have no knock ports: their packets have a rule of their own (core.spa_rules).
    for target, doors in _doors_by_target(d for d in config.doors if not d.is_spa):
        ports = {p for d in doors for p in d.knock_ports}
        if ports:
            names = quoted(_knock_comment(doors))
            knock = f"{iif}{_daddr_match(target)}meta l4proto . th dport {services_expr(ports)} "
            if limit is not None:
                bodies += [knock + match for match in _rate_matches(limit, target)]
            bodies.append(knock + f"{log} {verdict} comment {names}")
    return bodies


def _reply_rules() -> list[str]:
    """A closed port's answer, within the shared limit: a TCP reset, or ICMP (ICMPv6 for IPv6)
    port unreachable; over the limit, and for anything the kernel will not answer (a reset),
    the knock is dropped. Every path ends the packet here: nothing returns to the input chain."""
    rate = check_count(KNOCK_REPLY_RATE, "a rate", MAX_RATE)
    burst = check_count(KNOCK_REPLY_BURST, "a burst", MAX_RATE)
    return [
        f'limit rate over {rate}/second burst {burst} packets counter drop comment "reply limit"',
        "meta l4proto tcp reject with tcp reset",
        "reject with icmpx port-unreachable",
    ]


def _gate_rules(config: Config) -> list[str]:
    """Granted clients and always_allow in, marked; everyone else out of protected services."""
    protected = config.protected
    if not protected:
        return []
    services = services_expr(protected)
    # The hand-off: the admin's own chains after ours (on this hook, and on forward for a
    # packet DNAT'd elsewhere) accept what we mark.
    accept = f"{set_mark(config.options.grant_mark)} accept"
    bodies = [
        f"{family} saddr {network_set} meta l4proto . th dport {services} "
        f'{accept} comment "always_allow"'
        for family, network_set in _always_allow(config)
    ]
    if config.options.always_allow_names:
        bodies += [
            f"{family} saddr @{named} meta l4proto . th dport {services} {accept} "
            'comment "always_allow names"'
            for family, named in (("ip", ALWAYS_ALLOW4), ("ip6", ALWAYS_ALLOW6))
        ]
    return [
        *bodies,
        f"ip saddr . meta l4proto . th dport @{ALLOW4} {accept}",
        f"ip6 saddr . meta l4proto . th dport @{ALLOW6} {accept}",
        f'meta l4proto . th dport {services} drop comment "protected"',
    ]


def _prerouting_rules(config: Config) -> list[str]:
    """The same gate for every packet to one of this host's own addresses, before DNAT sends it
    to a container or a host behind (where the input chain never sees it).

    Packets to other ports or routed to other addresses leave at once, untouched. Knocks are
    judged (and logged) only in the input chain; a locally delivered packet meets the same gate
    there again, with the same outcome, so behaviour is as before. close_sessions ends
    forwarded connections here too.
    """
    services = services_expr(config.protected)
    return [
        *_loopback_rules(config),
        f"meta l4proto . th dport != {services} accept",
        "fib daddr type != local accept",
        *_deny_rules(config),
        *_session_rules(config),
        "ct state established,related accept",
        *_gate_rules(config),
    ]


def _loopback_rules(config: Config) -> list[str]:
    return [] if hears_loopback(config.options.interfaces) else [LOOPBACK_ACCEPT]


def _knock_comment(doors: list[Door]) -> str:
    """`knock: ssh,smtp`: the doors a knock rule serves, cut to what nft allows in a comment."""
    text = "knock: " + ",".join(d.name for d in doors)
    if len(text) <= MAX_COMMENT_LENGTH:
        return text
    return text[: MAX_COMMENT_LENGTH - 3] + "..."


def _deny_rules(config: Config) -> list[str]:
    """Banned sources dropped: from the protected services or from everything, as their door
    says (`deny`), never an always_allow network. A rule only for a scope some door bans from,
    so a config without banning doors costs no packet a lookup."""
    exempt = dict(_always_allow(config))
    services = services_expr(config.protected) if config.protected else None
    rules = []
    for (scope, version), name in DENY_SETS.items():
        if not config.bans(scope) or (scope == "services" and services is None):
            continue
        family = "ip" if version == 4 else "ip6"
        allowed = f"{family} saddr != {exempt[family]} " if family in exempt else ""
        allowed += _named_exemption(config, family)
        match = f" meta l4proto . th dport {services}" if scope == "services" else ""
        rules.append(f'{allowed}{family} saddr @{name}{match} drop comment "banned"')
    return rules


def _session_rules(config: Config) -> list[str]:
    """End the established connections to close_sessions services of clients without a grant.

    Only packets of connections the client opened (`ct direction original`), so replies to
    this host's own connections are never touched, and never from always_allow networks. A
    reset from the client passes, so that the server's side of the connection ends too the
    next time it sends. UDP has no reset to send: its packets are dropped.
    """
    services = config.sessions_closed
    exempt = dict(_always_allow(config))
    rules = []
    for protocol, end in (("tcp", "tcp flags & rst == 0 reject with tcp reset"), ("udp", "drop")):
        ports = sorted(
            check_count(p.port, "a port", MAX_PORT) for p in services if p.protocol == protocol
        )
        if not ports:
            continue
        for family, allow in (("ip", ALLOW4), ("ip6", ALLOW6)):
            networks = f"{family} saddr != {exempt[family]} " if family in exempt else ""
            networks += _named_exemption(config, family)
            rules.append(
                f"{protocol} dport {{ {', '.join(map(str, ports))} }} "
                f"ct direction original ct state established {networks}"
                f"{family} saddr . meta l4proto . th dport != @{allow} {end} "
                'comment "close_sessions"'
            )
    return rules


def _rate_sets(tx: Transaction, table: Table, limit: RateLimit) -> None:
    """The per-source bucket sets, made anew (add, delete, add) so size and timeout always
    follow the config; the buckets are only rate state, nothing is lost with them."""
    timeout = limit.bucket_seconds
    for name, addr_type in ((KNOCK_RATE4, "ipv4_addr"), (KNOCK_RATE6, "ipv6_addr")):
        rate = Set(table, name, (addr_type,), ("dynamic", "timeout"), timeout, KNOCK_RATE_SET_SIZE)
        tx.add(rate).delete(rate).add(rate)


def _rate_matches(limit: RateLimit, target: IPAddress | None) -> list[str]:
    """What drops a source's knocks beyond the limit, before they are logged: one rule per
    family the knock rule can see. `update` keeps a busy source's bucket alive."""
    count = check_count(limit.count, "a rate", MAX_RATE)
    burst = check_count(limit.burst, "a burst", MAX_RATE)
    over = f"limit rate over {count}/{limit.unit} burst {burst} packets"
    keys = [(4, KNOCK_RATE4, "ip saddr"), (6, KNOCK_RATE6, f"ip6 saddr and {IPV6_RATE_MASK}")]
    return [
        f'update @{name} {{ {key} {over} }} counter drop comment "knock rate limit"'
        for version, name, key in keys
        if target is None or target.version == version
    ]


def _doors_by_target(doors: Iterable[Door]) -> list[tuple[IPAddress | None, list[Door]]]:
    """Doors grouped by `target`, so each distinct destination costs one rule."""
    groups: dict[IPAddress | None, list[Door]] = {}
    for door in doors:
        groups.setdefault(door.target, []).append(door)
    return sorted(groups.items(), key=lambda kv: (kv[0] is not None, str(kv[0])))


def _named_exemption(config: Config, family: str) -> str:
    """The match that spares always_allow's named hosts, as `saddr != { networks }` spares its
    networks; nothing when the config names none."""
    if not config.options.always_allow_names:
        return ""
    named = ALWAYS_ALLOW4 if family == "ip" else ALWAYS_ALLOW6
    return f"{family} saddr != @{named} "


def _always_allow(config: Config) -> list[tuple[str, str]]:
    v4 = [n for n in config.options.always_allow if n.version == 4]
    v6 = [n for n in config.options.always_allow if n.version == 6]
    out = []
    for family, nets in (("ip", v4), ("ip6", v6)):
        if nets:
            out.append((family, networks(nets)))
    return out
