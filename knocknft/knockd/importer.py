"""knockd.conf -> knocknft YAML: the firewall-command recognizer and the config writer.

Pure: text in, text and notes out. knockd only runs shell commands; most of them add an iptables
(or nft) rule that accepts the knocker (`%IP%`) on a port, and delete it again, either as the
door's stop_command after cmd_timeout or from a second, closing door. Those pairs become native
grants (`open`, `open_for`, `close`); every other command is kept verbatim, with a comment saying
why, and knocknft runs it as knockd did.

A pair is only mapped when the delete removes exactly the rule the add inserted: `iptables -D`
needs the identical rule, so where the two differ knockd never removed the rule, and a native grant
that expires would not behave as the original did.
"""

from __future__ import annotations

import os
import re
import shlex
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import yaml

from knocknft.config import IFNAME_RE, TCP_FLAG_BITS, Door, PortSpec, parse_config
from knocknft.errors import Problem
from knocknft.knockd.grammar import KnockdConf

# How long a grant lasts when knockd's rule had no end of its own: added by one door and deleted
# only by another (openSSH/closeSSH), or never deleted. Long enough to connect, and established
# connections outlive the grant; short enough that a forgotten close (knockd left the rule until
# the firewall was reloaded) does not leave the door open for days. Knocking again extends it.
UNBOUNDED_OPEN_FOR = 3600

Action = Literal["add", "delete"]


@dataclass(frozen=True)
class FirewallRule:
    """An accept rule for the knocker, as an iptables/ip6tables/nft command adds or deletes it."""

    tool: str  # iptables, ip6tables or nft
    family: int  # the address family of the knocker the rule matches: 4 or 6
    action: Action
    chain: str
    services: tuple[PortSpec, ...]
    # Other matches, normalised and sorted: a delete removes the rule only if they are the same.
    matches: tuple[str, ...] = ()

    def same_rule(self, other: FirewallRule) -> bool:
        return (self.tool, self.family, self.chain, self.services, self.matches) == (
            other.tool,
            other.family,
            other.chain,
            other.services,
            other.matches,
        )

    def describe(self) -> str:
        return f"{self.tool} {self.chain} {', '.join(map(str, self.services))}"


@dataclass(frozen=True)
class Unrecognised:
    """A command the importer does not map; `reason` is said to the admin."""

    reason: str


Recognised = FirewallRule | Unrecognised

_SHELL_OPERATORS = re.compile(r"[;&|<>`$\n]")
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2212"  # hyphen look-alikes word processors put in
_IPTABLES = re.compile(r"^(ip6?tables)(?:-legacy|-nft)?$")


def recognise(command: str) -> Recognised:
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
    program = os.path.basename(words[0])
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


def _iptables(tool: str, args: list[str]) -> Recognised:
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


def _check_rule(
    *,
    table: str,
    chain: str,
    source: str | None,
    proto: str | None,
    ports: tuple[int, ...],
    target: str | None,
) -> str | None:
    """Why an accept rule is not one a knocknft grant can stand in for, or None if it is."""
    if table != "filter":
        return f"the rule is in table {table}, not filter"
    if chain.lower() != "input":
        # A user chain may be reached from anywhere, with conditions of its own.
        return f"the rule is in chain {chain}: knocknft grants stand in for rules in INPUT only"
    if target not in ("ACCEPT", "accept"):
        return f"the rule's verdict is {target or 'missing'}, not ACCEPT"
    if source != "%IP%":
        return (
            "it does not match the knocker's address as its source (-s %IP%)"
            if source is None
            else f"its source is {source!r}, not the knocker's address (%IP%)"
        )
    if proto not in ("tcp", "udp"):
        return f"its protocol is {proto or 'not given'}: a grant is for tcp or udp ports"
    if not ports:
        return "it names no destination port"
    return None


def _services(ports: tuple[int, ...], proto: str | None) -> tuple[PortSpec, ...]:
    # _check_rule has made sure proto is tcp or udp.
    return tuple(PortSpec(p, "udp" if proto == "udp" else "tcp") for p in ports)


_NFT_FAMILIES = ("ip", "ip6", "inet", "arp", "bridge", "netdev")


def _nft(args: list[str]) -> Recognised:
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
    )


# ---------------------------------------------------------------------------------------------
# Doors: what each one's commands amount to, alone and together with the other doors.


@dataclass(frozen=True)
class Command:
    """One of a door's command directives, where it stood, and what it does."""

    key: str  # our field name: start_command, stop_command, start_command_6, stop_command_6
    text: str
    line: int
    meaning: Recognised


@dataclass(frozen=True)
class Plan:
    """What a door's commands become.

    kind: "timed" (start adds, stop deletes the same rule: open for cmd_timeout), "opens" (start
    adds, nothing in the door deletes), "closes" (start deletes), "verbatim" (kept as commands),
    "nothing" (knockd ran no command).
    """

    kind: Literal["timed", "opens", "closes", "verbatim", "nothing"]
    rules: tuple[FirewallRule, ...] = ()  # the start rule per family knockd distinguishes
    reason: str = ""
    reason_line: int | None = None
    reason_key: str = ""

    @property
    def services(self) -> tuple[PortSpec, ...]:
        return self.rules[0].services if self.rules else ()


def _commands(door: Door, lines: Mapping[str, int]) -> dict[str, Command]:
    found = {}
    for key in ("start_command", "stop_command", "start_command_6", "stop_command_6"):
        text = getattr(door, key)
        if text is not None:
            found[key] = Command(key, text, lines.get(key, 0), recognise(text))
    return found


def plan_door(door: Door, lines: Mapping[str, int]) -> Plan:
    """Classify one door from its own commands; cross-door pairing comes after."""
    commands = _commands(door, lines)
    plans = [_plan_pair(commands.get("start_command"), commands.get("stop_command"))]
    if "start_command_6" in commands or "stop_command_6" in commands:
        # knockd's IPv6 knockers run the _6 commands, each falling back to the plain one.
        plans.append(
            _plan_pair(
                commands.get("start_command_6", commands.get("start_command")),
                commands.get("stop_command_6", commands.get("stop_command")),
            )
        )
    for plan in plans:
        if plan.kind == "verbatim":
            return plan
    first = plans[0]
    for other in plans[1:]:
        if other.kind != first.kind or other.services != first.services:
            start6 = commands.get("start_command_6") or commands.get("stop_command_6")
            return Plan(
                "verbatim",
                reason="the IPv6 commands do something else than the IPv4 ones, and a door's "
                "grant is the same for both families",
                reason_line=start6.line if start6 else None,
                reason_key=start6.key if start6 else "",
            )
    return Plan(first.kind, tuple(r for p in plans for r in p.rules))


def _plan_pair(start: Command | None, stop: Command | None) -> Plan:
    if start is None:
        # knockd runs a stop command only after a start command; alone it never runs.
        return Plan("nothing")
    for command in (start, stop):
        if command is not None and isinstance(command.meaning, Unrecognised):
            return Plan(
                "verbatim",
                reason=command.meaning.reason,
                reason_line=command.line,
                reason_key=command.key,
            )
    assert isinstance(start.meaning, FirewallRule)
    rule = start.meaning
    if stop is None:
        return Plan("opens" if rule.action == "add" else "closes", (rule,))
    assert isinstance(stop.meaning, FirewallRule)
    if rule.action == "add" and stop.meaning.action == "delete" and rule.same_rule(stop.meaning):
        return Plan("timed", (rule,))
    why = (
        "the stop command does not delete the rule the start command adds "
        f"({stop.meaning.describe()} vs {rule.describe()}): iptables -D needs the identical "
        "rule, so under knockd the rule stayed"
        if rule.action == "add" and stop.meaning.action == "delete"
        else "the start and stop commands are not an add and its delete"
    )
    return Plan("verbatim", reason=why, reason_line=stop.line, reason_key=stop.key)


def _pairs(plans: list[Plan]) -> dict[int, list[int]]:
    """For each closing door, the doors that add the rule it deletes (by index)."""
    found: dict[int, list[int]] = {}
    for i, closer in enumerate(plans):
        if closer.kind != "closes":
            continue
        found[i] = [
            j
            for j, opener in enumerate(plans)
            if opener.kind in ("opens", "timed")
            and all(any(c.same_rule(o) for o in opener.rules) for c in closer.rules)
        ]
    return found


# ---------------------------------------------------------------------------------------------
# The YAML writer: deterministic, commented, checked by parsing it back.


@dataclass(frozen=True)
class Imported:
    yaml: str
    # What could not be mapped, located in the knockd.conf: said on stderr and in the output.
    not_mapped: tuple[Problem, ...]


@dataclass
class _Out:
    lines: list[str] = field(default_factory=list)

    def comment(self, text: str, indent: int = 0) -> None:
        pad = " " * indent
        for paragraph in text.split("\n"):
            # An indented paragraph is a list item: its continuation lines hang under it.
            lead = len(paragraph) - len(paragraph.lstrip())
            hang = " " * (lead + 2) if lead else ""
            wrapped = textwrap.wrap(
                paragraph, 96 - indent, subsequent_indent=hang, break_on_hyphens=False
            ) or [""]
            self.lines += [f"{pad}# {w}".rstrip() for w in wrapped]

    def key(self, name: str, value: str, indent: int) -> None:
        self.lines.append(f"{' ' * indent}{name}: {value}")


def scalar(text: str) -> str:
    """`text` as a YAML scalar that reads back as exactly this string: plain when safe."""
    for candidate in (text, "'" + text.replace("'", "''") + "'"):
        try:
            if yaml.safe_load(f"k: {candidate}") == {"k": text}:
                return candidate
        except yaml.YAMLError:
            continue
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _ports_list(ports: tuple[PortSpec, ...]) -> str:
    return "[" + ", ".join(map(str, ports)) + "]"


def import_knockd(conf: KnockdConf, source: str) -> Imported:
    """The knocknft YAML equivalent of a parsed knockd.conf, and what it could not map."""
    return _Writer(conf, source).write()


class _Writer:
    def __init__(self, conf: KnockdConf, source: str) -> None:
        self.conf = conf
        self.source = source
        self.doors = conf.config.doors
        self.plans = [
            plan_door(d, lines) for d, lines in zip(self.doors, conf.door_lines, strict=True)
        ]
        self.openers = _pairs(self.plans)  # closing door -> the doors whose rule it deletes
        self.closers: dict[int, list[int]] = {}
        for closer, openers in self.openers.items():
            for opener in openers:
                self.closers.setdefault(opener, []).append(closer)
        self.names = _unique_names(self.doors)
        self.not_mapped: list[Problem] = []

    def write(self) -> Imported:
        bodies = []
        for index in range(len(self.doors)):
            out = _Out()
            self.door(out, index)
            bodies.append(out.lines)
        out = _Out()
        out.comment(f"Made by `knocknft import` from {self.source}.")
        out.comment(
            "Check it with `knocknft check -c FILE`; load it with `knocknft apply -c FILE`."
        )
        if any(p.kind in ("timed", "opens") for p in self.plans):
            out.comment(
                "\nBefore you stop knockd: knocknft drops new connections to the services under "
                "`open` for every address without a grant, in its own nft table. Your own "
                "firewall must now let those services through (knockd's commands punched holes "
                "in a DROP there), or no grant can take effect. Connections already established "
                "stay up when a grant ends, with no ESTABLISHED rule of yours needed."
            )
        if self.not_mapped:
            out.comment("\nNot mapped: kept as knockd commands, which knocknft runs as knockd did:")
            for problem in self.not_mapped:
                out.comment(f"  line {problem.line}: {problem.key}: {problem.message}")
        out.lines += ["", "options:"]
        self.options(out)
        out.lines += ["", "doors:"]
        for body in bodies:
            out.lines += body
        text = "\n".join(out.lines).rstrip("\n") + "\n"
        # The output must pass `knocknft check`: a failure here is a bug in this module, not in
        # the admin's file. One-time files are read on the server, not here.
        parse_config(text, "<imported>", read_file=lambda _: "")
        return Imported(text, tuple(self.not_mapped))

    def options(self, out: _Out) -> None:
        opts, lines = self.conf.options, self.conf.option_lines
        if opts.interface and IFNAME_RE.match(opts.interface):
            out.comment(f"Interface, line {lines['interface']}.", 2)
            out.key("interfaces", f"[{scalar(opts.interface)}]", 2)
        else:
            out.comment(
                "knockd listened on the interface of its -i option, or eth0. Without "
                "`interfaces` knocknft takes knocks on, and guards the services on, every "
                "interface; add `interfaces: [eth0]` to keep to one.",
                2,
            )
        if opts.use_syslog:
            out.comment(f"UseSyslog, line {lines['usesyslog']}.", 2)
            out.key("syslog", "true", 2)
        if opts.log_file is not None:
            if opts.log_file.is_absolute():
                out.comment(f"LogFile, line {lines['logfile']}.", 2)
                out.key("log_file", scalar(str(opts.log_file)), 2)
            else:
                out.comment(
                    f"LogFile = {opts.log_file} (line {lines['logfile']}) is not an absolute "
                    "path; knocknft needs one.",
                    2,
                )
        if opts.pid_file is not None:
            out.comment(
                f"PidFile = {opts.pid_file} (line {lines['pidfile']}) has no equivalent: "
                "`knocknft run` stays in the foreground under its supervisor (systemd).",
                2,
            )

    def door(self, out: _Out, index: int) -> None:
        door, lines, plan = self.doors[index], self.conf.door_lines[index], self.plans[index]
        out.lines.append("")
        out.comment(f"[{door.name}], {self.source} line {lines['name']}.", 2)
        if self.names[index] != door.name:
            out.comment(f"Renamed: an earlier section is also called [{door.name}].", 2)
        out.lines.append(f"  {scalar(self.names[index])}:")
        if door.one_time_sequences is not None:
            out.key("one_time_sequences", scalar(str(door.one_time_sequences)), 4)
        else:
            out.key("sequence", _ports_list(door.sequence), 4)
        if "seq_timeout" in lines:
            out.key("seq_timeout", duration(door.seq_timeout), 4)
        if "tcpflags" in lines:
            if door.tcpflags.required & TCP_FLAG_BITS["ack"]:
                out.comment(
                    "A connect() sends a SYN without ACK, so the knock client cannot open this "
                    "door (nor could it under knockd); only crafted packets can.",
                    4,
                )
            out.key("tcpflags", scalar(str(door.tcpflags)), 4)
        if door.target is not None:
            out.key("target", scalar(str(door.target)), 4)

        if plan.kind == "closes" and not self.openers.get(index):
            plan = Plan(
                "verbatim",
                reason="it deletes a rule no door of this file adds",
                reason_line=lines.get("start_command"),
                reason_key="start_command",
            )
        if plan.kind in ("timed", "opens"):
            self.granting(out, index, plan)
        elif plan.kind == "closes":
            openers = self.door_names(self.openers[index])
            out.comment(f"line {lines['start_command']}: {door.start_command}", 4)
            out.comment(
                f"That deletes the rule {openers} adds: this door revokes the knocker's grant.",
                4,
            )
            out.key("close", _ports_list(plan.services), 4)
        elif plan.kind == "nothing":
            out.comment(
                "knockd ran no command for this door; `true` keeps the door, its knocks and its "
                "log lines, since a knocknft door must do something.",
                4,
            )
            out.key("start_command", "'true'", 4)
        else:
            self.verbatim(out, index, plan)

    def verbatim(self, out: _Out, index: int, plan: Plan) -> None:
        door, lines = self.doors[index], self.conf.door_lines[index]
        self.not_mapped.append(
            Problem(
                self.conf.config.source,
                plan.reason_line,
                f"[{door.name}] {plan.reason_key}",
                plan.reason,
            )
        )
        out.comment(f"Kept as written, not mapped: {plan.reason}.", 4)
        for command in _commands(door, lines).values():
            out.comment(f"line {command.line}", 4)
            out.key(command.key, scalar(command.text), 4)
        if door.stop_command or door.stop_command_6:
            out.key("cmd_timeout", duration(door.cmd_timeout), 4)

    def door_names(self, indexes: list[int]) -> str:
        return ", ".join(f"[{self.doors[j].name}]" for j in indexes)

    def granting(self, out: _Out, index: int, plan: Plan) -> None:
        door, lines = self.doors[index], self.conf.door_lines[index]
        for command in _commands(door, lines).values():
            out.comment(f"line {command.line}: {command.text}", 4)
        families = {r.family for r in plan.rules}
        if families != {4, 6}:
            only = families.pop()
            out.comment(
                f"Under knockd only IPv{only} knockers got in ({plan.rules[0].tool} refuses the "
                "other family's address); knocknft grants the knocker's address in either "
                "family.",
                4,
            )
        out.key("open", _ports_list(plan.services), 4)
        if plan.kind == "timed":
            out.comment("The stop command deletes that rule cmd_timeout later: the grant's end.", 4)
            out.key("open_for", duration(door.cmd_timeout), 4)
            return
        closers = self.closers.get(index)
        until = (
            f"until {self.door_names(closers)} was knocked, or for ever when nobody did"
            if closers
            else "for ever: no command of this file deletes it (only a firewall reload did)"
        )
        out.comment(
            f"knockd kept the rule {until}. A grant needs an end: "
            f"{duration(UNBOUNDED_OPEN_FOR)} leaves time to connect (connections outlive the "
            "grant) and bounds a forgotten close. Knocking again extends it; change it to suit.",
            4,
        )
        out.key("open_for", duration(UNBOUNDED_OPEN_FOR), 4)


def _unique_names(doors: tuple[Door, ...]) -> list[str]:
    """knockd allows two sections of one name (two doors); YAML keys must differ."""
    seen: dict[str, int] = {}
    names = []
    for door in doors:
        seen[door.name] = seen.get(door.name, 0) + 1
        names.append(door.name if seen[door.name] == 1 else f"{door.name}-{seen[door.name]}")
    return names
