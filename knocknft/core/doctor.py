"""What else in the ruleset would still stop a granted client: what `knocknft doctor` judges.

Pure: the live ruleset as libnftables JSON (`list ruleset`, every table, iptables-nft ones
included) and our config in; findings out, each with the fix for that kind of firewall
(knocknft.core.fixes). An accept in our table does not override a drop in another table's base
chain on the same hook, so every such chain is walked, for each protected service, as a granted
client's new connection would go through it: what a rule matches is judged from what is known
of that packet (its protocol and port, our mark bit once our chain has run, a new connection
from the network); a rule it may or may not match counts neither as an accept nor as a drop.
So a finding means: this chain drops that service's packets whoever sends them.

A protected port that another table DNATs in prerouting (Docker's published ports, a router's
port forwards) goes on to the forward hook, not to input: its forward chains are walked as well,
with the port it is sent on to (unknown after iptables' DNAT target, whose listing does not say
it: rules on the port are then "maybe"). A DNAT reached only through a match we cannot judge
(Docker's `addrtype`) may or may not happen: both hooks are checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from knocknft.config import Config, PortSpec
from knocknft.core.fixes import BaseChain, Fixes, fixes_for
from knocknft.core.ruleset import INPUT_PRIORITY_VALUE

Verdict = Literal["accept", "drop", "continue"]
# What a match says of the packet walked: always, never, or it depends on what we do not know.
Known = Literal["yes", "no", "maybe"]
# Chains jump into chains; a loop or a deep tree is judged "maybe" past this depth.
MAX_DEPTH = 16
# Statements that neither match nor decide.
_NEUTRAL = frozenset({"counter", "log", "comment", "notrack", "mangle", "set"})
# Statements that rewrite addresses: no match, and no verdict a filter walk cares about.
_NAT = frozenset({"dnat", "snat", "masquerade", "redirect"})
_DROPS = frozenset({"drop", "reject"})


@dataclass(frozen=True)
class Packet:
    """What is known of a granted client's packet when a chain sees it."""

    service: PortSpec
    # Whether our chain has run by then, so the packet carries our mark bit.
    marked: bool
    mark: int
    # After a DNAT: forwarded, to this port (None: the listing does not say).
    forwarded: bool = False
    to_port: int | None = None

    @property
    def port(self) -> int | None:
        return self.to_port if self.forwarded else self.service.port


@dataclass(frozen=True)
class Dnat:
    """A DNAT a protected service's packets may meet: whether surely, and to which port."""

    known: Known
    to_port: int | None


@dataclass(frozen=True)
class Finding:
    """A base chain of another table that drops granted clients of `services`."""

    chain: BaseChain
    services: tuple[PortSpec, ...]
    # Why: "policy drop" or "a rule drops them".
    reason: str
    fixes: Fixes

    def to_json(self) -> dict[str, Any]:
        c = self.chain
        return {
            "table": f"{c.family} {c.table}",
            "chain": c.name,
            "hook": c.hook,
            "priority": c.priority,
            "fix": self.fixes.command,
        }


class Ruleset:
    """The listing, indexed: chains by (family, table, name), their rules in order."""

    def __init__(self, listing: Mapping[str, Any]) -> None:
        self.chains: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.rules: dict[tuple[str, str, str], list[list[dict[str, Any]]]] = {}
        for item in listing.get("nftables", []):
            if not isinstance(item, dict):
                continue
            if isinstance(item.get("chain"), dict):
                c = item["chain"]
                key = (str(c.get("family")), str(c.get("table")), str(c.get("name")))
                self.chains[key] = c
                self.rules.setdefault(key, [])
            elif isinstance(item.get("rule"), dict):
                r = item["rule"]
                key = (str(r.get("family")), str(r.get("table")), str(r.get("chain")))
                expr = r.get("expr")
                self.rules.setdefault(key, []).append(expr if isinstance(expr, list) else [])

    def base_chains(
        self, hook: str, skip_table: tuple[str, str], kind: str = "filter"
    ) -> list[BaseChain]:
        out = []
        for (family, table, name), c in self.chains.items():
            if c.get("hook") != hook or (family, table) == skip_table:
                continue
            if c.get("type", "filter") != kind:
                continue
            if family not in ("inet", "ip", "ip6") or not isinstance(c.get("prio"), int):
                continue
            policy = str(c.get("policy", "accept"))
            out.append(BaseChain(family, table, name, hook, c["prio"], policy))
        return sorted(out, key=lambda b: (b.priority, b.family, b.table, b.name))

    def walk(self, family: str, table: str, chain: str, packet: Packet, depth: int = 0) -> Verdict:
        """Where `packet` ends in this chain: accepted, dropped, or on past its end."""
        if depth > MAX_DEPTH:
            return "continue"
        for expr in self.rules.get((family, table, chain), []):
            if rule_matches(expr, packet) != "yes":
                continue
            verdict = _verdict(expr)
            if verdict is None:
                continue
            kind, target = verdict
            if kind in ("accept", "drop"):
                return kind  # type: ignore[return-value]
            if kind == "return":
                return "continue"
            if kind in ("jump", "goto") and target is not None:
                inner = self.walk(family, table, target, packet, depth + 1)
                if inner != "continue" or kind == "goto":
                    return inner
        return "continue"

    def dnat(
        self, family: str, table: str, chain: str, packet: Packet, depth: int = 0
    ) -> Dnat | None:
        """The DNAT `packet` may meet in this nat chain, following every jump it may take."""
        if depth > MAX_DEPTH:
            return None
        for expr in self.rules.get((family, table, chain), []):
            known = rule_matches(expr, packet)
            if known == "no":
                continue
            target = _dnat_target(expr)
            if target is not None:
                return Dnat(known, target if isinstance(target, int) else None)
            verdict = _verdict(expr)
            if verdict is None:
                continue
            kind, name = verdict
            if kind in ("jump", "goto") and name is not None:
                inner = self.dnat(family, table, name, packet, depth + 1)
                if inner is not None:
                    return Dnat("maybe" if known == "maybe" else inner.known, inner.to_port)
            elif known == "yes":
                return None  # accepted, dropped or returned: no DNAT past here
        return None


def _dnat_target(expr: list[dict[str, Any]]) -> int | bool | None:
    """A DNAT's port, True for a DNAT whose port the listing does not show, None for none."""
    for statement in expr:
        if not isinstance(statement, dict):
            continue
        dnat = statement.get("dnat")
        if isinstance(dnat, dict):
            port = dnat.get("port")
            return port if isinstance(port, int) and not isinstance(port, bool) else True
        xt = statement.get("xt")
        if isinstance(xt, dict) and xt.get("type") == "target" and xt.get("name") == "DNAT":
            return True
    return None


def _verdict(expr: list[dict[str, Any]]) -> tuple[str, str | None] | None:
    for statement in expr:
        if not isinstance(statement, dict):
            continue
        for key in ("accept", "drop", "reject", "return"):
            if key in statement:
                return ("drop" if key in _DROPS else key, None)
        for key in ("jump", "goto"):
            if key in statement and isinstance(statement[key], dict):
                target = statement[key].get("target")
                return (key, str(target) if target is not None else None)
    return None


def rule_matches(expr: Iterable[Any], packet: Packet) -> Known:
    """Whether every match of a rule holds for `packet`."""
    result: Known = "yes"
    for statement in expr:
        if not isinstance(statement, dict) or not statement:
            return "maybe"
        key = next(iter(statement))
        if key in ("accept", "drop", "reject", "return", "jump", "goto"):
            continue
        if key in _NEUTRAL or key in _NAT or (key == "xt" and _is_xt_target(statement[key])):
            continue
        if key != "match":
            return "maybe"  # limits, quotas, xt matches, anything we cannot judge
        known = _match(statement["match"], packet)
        if known == "no":
            return "no"
        if known == "maybe":
            result = "maybe"
    return result


def _is_xt_target(value: Any) -> bool:
    """An iptables target (DNAT, MASQUERADE, LOG...) in an iptables-nft rule: not a match."""
    return isinstance(value, dict) and value.get("type") == "target" and "name" in value


def _match(match: Any, packet: Packet) -> Known:
    if not isinstance(match, dict):
        return "maybe"
    op, left, right = match.get("op"), match.get("left"), match.get("right")
    if op not in ("==", "!=", "in"):
        return "maybe"
    negate = op == "!="
    known = _known(left, right, packet)
    if known == "maybe" or not negate:
        return known
    return "no" if known == "yes" else "yes"


def _known(left: Any, right: Any, packet: Packet) -> Known:
    """Whether `left` is `right` for `packet`, by the kind of value `left` reads."""
    if not isinstance(left, dict) or len(left) != 1:
        return "maybe"
    key, value = next(iter(left.items()))
    judge = _JUDGES.get(key)
    return judge(value, right, packet) if judge is not None else "maybe"


def _meta(value: Any, right: Any, packet: Packet) -> Known:
    key = value.get("key") if isinstance(value, dict) else None
    if key == "l4proto":
        return _among(packet.service.protocol, right)
    if key in ("iif", "iifname") and right == "lo":
        return "no"  # granted clients come from the network, never from loopback
    return "maybe"


def _payload(value: Any, right: Any, packet: Packet) -> Known:
    if not isinstance(value, dict) or value.get("field") != "dport":
        return "maybe"
    protocol = value.get("protocol")
    if protocol not in ("tcp", "udp", "th"):
        return "maybe"
    if protocol not in ("th", packet.service.protocol):
        return "no"
    if packet.port is None:
        return "maybe"
    return _among(packet.port, right)


def _ct(value: Any, right: Any, packet: Packet) -> Known:
    if not isinstance(value, dict) or value.get("key") != "state":
        return "maybe"
    # A grant opens new connections: what is already established is not the question.
    return _among("new", right)


def _masked(value: Any, right: Any, packet: Packet) -> Known:
    """`meta mark & BIT == BIT`, our bit alone: true exactly when our chain marked the packet."""
    mark = {"meta": {"key": "mark"}}
    if value == [mark, packet.mark] and right == packet.mark:
        return "yes" if packet.marked else "no"
    return "maybe"


_JUDGES = {"meta": _meta, "payload": _payload, "ct": _ct, "&": _masked}


def _among(value: object, right: Any) -> Known:
    """Whether `value` is `right`: a value, a list, an anonymous set or a range."""
    if isinstance(right, dict) and "set" in right:
        right = right["set"]
    if isinstance(right, list):
        known = [_among(value, item) for item in right]
        return "yes" if "yes" in known else ("maybe" if "maybe" in known else "no")
    if isinstance(right, dict) and isinstance(right.get("range"), list):
        low, high = right["range"]
        if isinstance(value, int) and isinstance(low, int) and isinstance(high, int):
            return "yes" if low <= value <= high else "no"
        return "maybe"
    if isinstance(right, str) and right.startswith("@"):
        return "maybe"  # a named set: its elements are not in the listing we judge
    if isinstance(right, (str, int)):
        return "yes" if right == value else "no"
    return "maybe"


def diagnose(listing: Mapping[str, Any], config: Config) -> list[Finding]:
    """Every base chain outside our table that drops a protected service: on the input hook,
    and on the forward hook for a service another table may DNAT."""
    opts = config.options
    ruleset = Ruleset(listing)
    ours = ("inet", opts.table)
    local: list[Packet] = []
    forwarded: list[Packet] = []
    for service in sorted(config.protected):
        dnat = _dnat(ruleset, ours, Packet(service, True, opts.grant_mark))
        if dnat is None or dnat.known == "maybe":
            local.append(Packet(service, False, opts.grant_mark))
        if dnat is not None:
            # Our prerouting chain (dstnat - 10) has marked it before any forward chain runs.
            forwarded.append(Packet(service, True, opts.grant_mark, True, dnat.to_port))
    findings = []
    for chain in ruleset.base_chains("input", ours):
        # Our chain marks as it accepts: only the chains after it see the mark.
        marked = chain.priority > INPUT_PRIORITY_VALUE
        findings += _chain_findings(ruleset, chain, [replace(p, marked=marked) for p in local])
    if forwarded:
        for chain in ruleset.base_chains("forward", ours):
            findings += _chain_findings(ruleset, chain, forwarded)
    return findings


def _dnat(ruleset: Ruleset, ours: tuple[str, str], packet: Packet) -> Dnat | None:
    """The first DNAT of another table's prerouting nat chains that `packet` may meet."""
    for chain in ruleset.base_chains("prerouting", ours, kind="nat"):
        dnat = ruleset.dnat(chain.family, chain.table, chain.name, packet)
        if dnat is not None:
            return dnat
    return None


def _chain_findings(ruleset: Ruleset, chain: BaseChain, packets: list[Packet]) -> list[Finding]:
    """The findings for one base chain: the services whose packets it drops."""
    if not packets:
        return []
    marked = packets[0].marked
    blocked = []
    reason = f"policy {chain.policy}"
    for packet in packets:
        verdict = ruleset.walk(chain.family, chain.table, chain.name, packet)
        if verdict == "drop":
            reason = "a rule drops them"
        if verdict == "drop" or (verdict == "continue" and chain.policy == "drop"):
            blocked.append(packet.service)
    # A chain before ours accepts the services themselves: one finding per protocol, as an
    # iptables rule takes one (knocknft.core.fixes).
    groups = (
        [blocked]
        if marked
        else [[p for p in blocked if p.protocol == proto] for proto in ("tcp", "udp")]
    )
    mark = packets[0].mark
    return [
        Finding(
            chain,
            tuple(group),
            reason,
            fixes_for(ruleset.chains, chain, tuple(group), marked, mark),
        )
        for group in filter(None, groups)
    ]


def describe(finding: Finding) -> str:
    """One line: where granted clients are still dropped, and the command that lets them in."""
    c = finding.chain
    services = ", ".join(map(str, finding.services))
    fix = finding.fixes.command or "none that can be given safely: the table or chain name is odd"
    return (
        f"table {c.family} {c.table}, chain {c.name} (hook {c.hook}, priority {c.priority}): "
        f"{finding.reason}, so a grant does not open {services}; fix: {fix}"
    )
