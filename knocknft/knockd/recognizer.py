"""Which knockd commands are firewall rules knocknft can express natively.

knockd only runs shell commands; most of them add an iptables (or nft) rule that accepts the
knocker (`%IP%`) on a port, or delete it again; a "banned" door's rule drops the knocker instead
(on some ports, or everywhere). `recognise` reads one command and says which rule it adds or
deletes, or why knocknft cannot stand in for it. Pure: text in, a FirewallRule or an
Unrecognised out.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass
from typing import Literal

from knocknft.config import PortSpec

Action = Literal["add", "delete"]
Verdict = Literal["accept", "drop"]
# The targets a knocknft grant or ban stands in for; REJECT only answers the packet it drops.
_VERDICTS: dict[str, Verdict] = {
    "ACCEPT": "accept",
    "accept": "accept",
    "DROP": "drop",
    "drop": "drop",
    "REJECT": "drop",
    "reject": "drop",
}


@dataclass(frozen=True)
class FirewallRule:
    """A rule for the knocker, as an iptables/ip6tables/nft command adds or deletes it: one that
    accepts it on some services, or drops it (`services` empty: from everything)."""

    tool: str  # iptables, ip6tables or nft
    family: int  # the address family of the knocker the rule matches: 4 or 6
    action: Action
    chain: str
    services: tuple[PortSpec, ...]
    # Other matches, normalised and sorted: a delete removes the rule only if they are the same.
    matches: tuple[str, ...] = ()
    verdict: Verdict = "accept"

    def same_rule(self, other: FirewallRule) -> bool:
        return self._identity() == other._identity()

    def _identity(self) -> tuple[object, ...]:
        return (self.tool, self.family, self.chain, self.services, self.matches, self.verdict)

    def describe(self) -> str:
        return f"{self.tool} {self.chain} {', '.join(map(str, self.services)) or 'all'}"


@dataclass(frozen=True)
class Unrecognised:
    """A command the importer does not map; `reason` is said to the admin."""

    reason: str


Recognised = FirewallRule | Unrecognised

_SHELL_OPERATORS = re.compile(r"[;&|<>`$\n]")
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2212"  # hyphen look-alikes word processors put in
_IPTABLES = re.compile(r"^(ip6?tables)(?:-legacy|-nft)?$")


def recognise(command: str) -> Recognised:  # noqa: PLR0911 - one return per recognised shape, each with its own result
    """What a knockd command does, if it is a firewall rule knocknft can express natively."""
    lookalike = next((c for c in command if c in _DASHES), None)
    if lookalike is not None:
        word = next(w for w in command.split() if lookalike in w)
        return Unrecognised(
            f"{word!r} is written with {_dash_name(lookalike)}, not two hyphens: the command "
            "fails, so under knockd it opened nothing"
        )
    if _SHELL_OPERATORS.search(command):
        return Unrecognised("it is a shell construct (operators, redirections or variables)")
    try:
        words = shlex.split(command)
    except ValueError as exc:
        return Unrecognised(f"the shell cannot split it: {exc}")
    if not words:
        return Unrecognised("it is empty")
    program = posixpath.basename(words[0])
    match = _IPTABLES.match(program)
    if match:
        return _iptables(match.group(1), words[1:])
    if program == "nft":
        return _nft(words[1:])
    return Unrecognised(f"{program!r} is not iptables, ip6tables or nft")


def _dash_name(char: str) -> str:
    return {"\u2013": "an en dash", "\u2014": "an em dash"}.get(
        char, f"a look-alike of '-' (U+{ord(char):04X})"
    )


def _iptables(tool: str, args: list[str]) -> Recognised:  # noqa: C901, PLR0912, PLR0915 - one branch per iptables option recognised or refused, in argv order
    action: Action | None = None
    chain = table = ""
    source = proto = target = None
    ports: tuple[int, ...] = ()
    matches: set[str] = set()
    modules: set[str] = set()
    i = 0

    def value() -> str:
        if i + 1 >= len(args):
            raise _Reject(f"{args[i]} has no value")
        return args[i + 1]

    try:
        while i < len(args):
            arg = args[i]
            if arg.startswith("-") and not arg.startswith("--") and len(arg) > 2:
                raise _Reject(f"the option {arg} has no knocknft equivalent")
            if arg == "--syn":
                matches.add("syn")
                i += 1
                continue
            if not arg.startswith("-"):
                raise _Reject(
                    f"{tool} rejects {arg!r}: its options start with '-' (lost in a copy?), so "
                    "under knockd the command failed and opened nothing"
                )
            given = value()
            if arg in ("-A", "--append", "-I", "--insert", "-D", "--delete"):
                action = "delete" if arg in ("-D", "--delete") else "add"
                chain = given
                if i + 2 < len(args) and args[i + 2].isdigit():
                    if action == "delete":
                        raise _Reject("it deletes by rule number, whatever rule is there")
                    i += 1  # -I CHAIN 1: the position does not change what the rule does
            elif arg in ("-t", "--table"):
                table = given
            elif arg in ("-s", "--source", "--src"):
                source = given
            elif arg in ("-p", "--protocol"):
                proto = given.lower()
            elif arg in ("-m", "--match"):
                if given.lower() not in ("tcp", "udp", "state", "conntrack", "multiport"):
                    raise _Reject(f"the match -m {given} has no knocknft equivalent")
                modules.add(given.lower())
            elif arg in ("--dport", "--destination-port", "--dports", "--destination-ports"):
                ports = _ports(given, multi=arg.endswith("s"))
            elif arg in ("--state", "--ctstate"):
                states = sorted(given.upper().split(","))
                if "NEW" not in states:
                    raise _Reject(f"it matches {','.join(states)} connections, not new ones")
                matches.add(f"{arg} {','.join(states)}")
            elif arg in ("-j", "--jump"):
                target = given
            else:
                raise _Reject(f"the option {arg} has no knocknft equivalent")
            i += 2
    except _Reject as exc:
        return Unrecognised(exc.reason)
    if action is None:
        return Unrecognised("it neither adds (-A, -I) nor deletes (-D) a rule")
    problem = _check_rule(
        table=table or "filter", chain=chain, source=source, proto=proto, ports=ports, target=target
    )
    if problem:
        return Unrecognised(problem)
    matches |= {f"-m {m}" for m in modules - {proto}}
    return FirewallRule(
        tool,
        6 if tool == "ip6tables" else 4,
        action,
        chain,
        _services(ports, proto),
        tuple(sorted(matches)),
        _VERDICTS[str(target)],
    )


class _Reject(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _ports(text: str, multi: bool) -> tuple[int, ...]:
    items = text.split(",") if multi else [text]
    if not all(item.isdigit() and 1 <= int(item) <= 65535 for item in items):
        raise _Reject(f"the port {text!r} is not one knocknft can grant (a range or a name?)")
    return tuple(sorted({int(item) for item in items}))


def _check_rule(  # noqa: PLR0911 - one return per recognised shape, each with its own result
    *,
    table: str,
    chain: str,
    source: str | None,
    proto: str | None,
    ports: tuple[int, ...],
    target: str | None,
) -> str | None:
    """Why a rule is not one a knocknft grant (or ban) can stand in for, or None if it is."""
    if table != "filter":
        return f"the rule is in table {table}, not filter"
    if chain.lower() != "input":
        # A user chain may be reached from anywhere, with conditions of its own.
        return f"the rule is in chain {chain}: knocknft grants stand in for rules in INPUT only"
    if target not in _VERDICTS:
        return f"the rule's verdict is {target or 'missing'}, not ACCEPT or DROP"
    if source != "%IP%":
        return (
            "it does not match the knocker's address as its source (-s %IP%)"
            if source is None
            else f"its source is {source!r}, not the knocker's address (%IP%)"
        )
    if _VERDICTS[target] == "drop" and proto is None and not ports:
        return None  # the knocker dropped from the whole host: a ban
    if proto not in ("tcp", "udp"):
        return f"its protocol is {proto or 'not given'}: a grant is for tcp or udp ports"
    if not ports:
        return "it names no destination port"
    return None


def _services(ports: tuple[int, ...], proto: str | None) -> tuple[PortSpec, ...]:
    # _check_rule has made sure proto is tcp or udp, or that there is no port (a ban from all).
    return tuple(PortSpec(p, "udp" if proto == "udp" else "tcp") for p in ports)


_NFT_FAMILIES = ("ip", "ip6", "inet", "arp", "bridge", "netdev")


def _nft(args: list[str]) -> Recognised:  # noqa: C901, PLR0911, PLR0912 - one branch per nft command shape recognised or refused
    if args[:2] in (["delete", "rule"], ["destroy", "rule"]):
        return Unrecognised("nft deletes a rule by its handle, which no command can know ahead")
    if args[:2] not in (["add", "rule"], ["insert", "rule"]):
        return Unrecognised(
            f"'nft {' '.join(args[:2])}' changes your own ruleset (a set, a map?): what it opens "
            "is decided there, not in the command"
        )
    rest = args[2:]
    family = rest.pop(0) if rest and rest[0] in _NFT_FAMILIES else "ip"
    if len(rest) < 2:
        return Unrecognised("it names no table and chain")
    chain = rest[1]
    expr = rest[2:]
    if expr[:1] in (["position"], ["index"], ["handle"]):
        expr = expr[2:]  # where the rule goes does not change what it does
    source_family: int | None = None
    proto: str | None = None
    ports: tuple[int, ...] = ()
    matches: list[str] = []
    verdict = None
    i = 0
    while i < len(expr):
        word, nxt = expr[i], expr[i + 1 : i + 3]
        if word in ("ip", "ip6") and nxt[:1] == ["saddr"] and len(nxt) == 2:
            if nxt[1] != "%IP%":
                return Unrecognised(f"its source is {nxt[1]!r}, not the knocker's address (%IP%)")
            source_family = 4 if word == "ip" else 6
        elif word in ("tcp", "udp") and nxt[:1] == ["dport"] and len(nxt) == 2:
            proto = word
            try:
                ports = _ports(nxt[1], multi=False)
            except _Reject as exc:
                return Unrecognised(exc.reason)
        elif word == "ct" and nxt[:1] == ["state"] and len(nxt) == 2:
            states = sorted(nxt[1].lower().split(","))
            if "new" not in states:
                return Unrecognised(f"it matches {','.join(states)} connections, not new ones")
            matches.append(f"ct state {','.join(states)}")
        elif word in ("accept", "drop", "reject") and i == len(expr) - 1:
            verdict = word
            i += 1
            continue
        else:
            return Unrecognised(f"the expression {' '.join(expr[i:])!r} has no knocknft equivalent")
        i += 3
    if family not in ("ip", "ip6", "inet"):
        return Unrecognised(f"the rule is in an {family} table, which sees no IP traffic to grant")
    if source_family is None:
        return Unrecognised("it does not match the knocker's address (ip saddr %IP%)")
    if (family, source_family) in (("ip", 6), ("ip6", 4)):
        return Unrecognised(f"an {family} table never sees the knocker's family")
    problem = _check_rule(
        table="filter", chain=chain, source="%IP%", proto=proto, ports=ports, target=verdict
    )
    if problem:
        return Unrecognised(problem)
    return FirewallRule(
        "nft",
        source_family,
        "add",
        f"{family} {rest[0]} {chain}",
        _services(ports, proto),
        tuple(matches),
        _VERDICTS[str(verdict)],
    )
