"""knockd.conf -> knocknft YAML: deterministic, commented, and checked by parsing it back.

Each door becomes what its plan says: a native grant (`open`, `open_for`), a closing door
(`close`), a banning door (`deny_for`, `deny`), or its commands kept verbatim, with a comment
saying why, for knocknft to run as knockd did. Pure: a parsed knockd.conf in, YAML text and the
not-mapped notes out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from knocknft.config import (
    IFNAME_RE,
    TCP_FLAG_BITS,
    Door,
    PortSpec,
    format_duration,
    parse_config,
)
from knocknft.config.emit import CommentedYaml, scalar, write_interface
from knocknft.errors import Problem
from knocknft.knockd.grammar import KnockdConf
from knocknft.knockd.planner import Plan, closing_pairs, door_commands, plan_door

# How long a grant lasts when knockd's rule had no end of its own: added by one door and deleted
# only by another (openSSH/closeSSH), or never deleted. Long enough to connect, and established
# connections outlive the grant; short enough that a forgotten close (knockd left the rule until
# the firewall was reloaded) does not leave the door open for days. Knocking again extends it.
UNBOUNDED_OPEN_FOR = 3600
# How long a ban lasts when knockd's drop rule had no end of its own (never deleted): a day keeps
# a scanner out, and a forged source (a ban can be knocked in anyone's name) is not locked out
# for good. Knocking again extends it.
UNBOUNDED_DENY_FOR = 86400


@dataclass(frozen=True)
class Imported:
    yaml: str
    # What could not be mapped, located in the knockd.conf: said on stderr and in the output.
    not_mapped: tuple[Problem, ...]


def _ports_list(ports: tuple[PortSpec, ...]) -> str:
    return "[" + ", ".join(map(str, ports)) + "]"


@dataclass(frozen=True)
class _Doors:
    """Every door of the file with its plan: what writing one door needs to know of the others."""

    conf: KnockdConf
    source: str
    plans: list[Plan]
    openers: dict[int, list[int]]  # closing door -> the doors whose rule it deletes
    closers: dict[int, list[int]]  # opening door -> the doors that delete its rule
    names: list[str]  # the YAML key of each door: unique, as knockd's section names need not be

    def door(self, index: int) -> Door:
        return self.conf.config.doors[index]

    def lines(self, index: int) -> Mapping[str, int]:
        return self.conf.door_lines[index]

    def door_names(self, indexes: list[int]) -> str:
        return ", ".join(f"[{self.door(j).name}]" for j in indexes)


def _plan_doors(conf: KnockdConf, source: str) -> _Doors:
    doors = conf.config.doors
    plans = [plan_door(d, lines) for d, lines in zip(doors, conf.door_lines, strict=True)]
    openers = closing_pairs(plans)
    closers: dict[int, list[int]] = {}
    for closer, its_openers in openers.items():
        for opener in its_openers:
            closers.setdefault(opener, []).append(closer)
    return _Doors(conf, source, plans, openers, closers, _unique_names(doors))


def import_knockd(conf: KnockdConf, source: str, trusted: Path | None = None) -> Imported:
    """The knocknft YAML equivalent of a parsed knockd.conf, and what it could not map. With
    `trusted`, the trusted list the setup keeps (see `trusted_file`) becomes always_allow_file."""
    doors = _plan_doors(conf, source)
    not_mapped: list[Problem] = []
    bodies: list[str] = []
    for index in range(len(conf.config.doors)):
        out = CommentedYaml()
        problem = _write_door(out, doors, index)
        if problem is not None:
            not_mapped.append(problem)
        bodies += out.lines
    out = CommentedYaml()
    _write_header(out, doors, not_mapped)
    out.lines += ["", "options:"]
    _write_options(out, conf)
    if trusted is not None:
        out.comment(
            f"The trusted list {trusted}: one address, network or host name a line, let in "
            "without knocking (knockd.trusted's format). Names are resolved at apply and again "
            "while the daemon runs. Check that it is the list your knockd setup read.",
            2,
        )
        out.key("always_allow_file", scalar(str(trusted)), 2)
    out.lines += ["", "doors:", *bodies]
    text = out.text()
    # The output must pass `knocknft check`: a failure here is a bug in this module, not in
    # the admin's file. One-time files are read on the server, not here.
    parse_config(text, "<imported>", read_file=lambda _: "")
    return Imported(text, tuple(not_mapped))


# A path in a door's command that names a trusted list: /etc/knockd/knockd.trusted, .../trusted.
_TRUSTED_PATH_RE = re.compile(r"(?<![\w/.-])(/[\w./-]*trusted)(?![\w./-])")
# Where the university's setup keeps its list: next to knockd.conf, read by its init script.
TRUSTED_NEXT_TO_CONF = "knockd.trusted"


def trusted_file(conf: KnockdConf) -> Path | None:
    """The trusted list a door's command names (a script run as `... trust FILE`, a loop over the
    file), if one does: the first such path, in file order."""
    for door in conf.config.doors:
        for command in (door.start_command, door.stop_command, door.start_command_6):
            match = _TRUSTED_PATH_RE.search(command or "")
            if match:
                return Path(match.group(1))
    return None


def _write_header(out: CommentedYaml, doors: _Doors, not_mapped: list[Problem]) -> None:
    out.comment(f"Made by `knocknft import` from {doors.source}.")
    out.comment("Check it with `knocknft check -c FILE`; load it with `knocknft apply -c FILE`.")
    if any(p.kind in ("timed", "opens") for p in doors.plans):
        out.comment(
            "\nBefore you stop knockd: knocknft drops new connections to the services under "
            "`open` for every address without a grant, in its own nft table. Your own "
            "firewall must now let those services through (knockd's commands punched holes "
            "in a DROP there), or no grant can take effect. Connections already established "
            "stay up when a grant ends, with no ESTABLISHED rule of yours needed."
        )
    if not_mapped:
        out.comment("\nNot mapped: kept as knockd commands, which knocknft runs as knockd did:")
        for problem in not_mapped:
            out.comment(f"  line {problem.line}: {problem.key}: {problem.message}")


def _write_options(out: CommentedYaml, conf: KnockdConf) -> None:
    opts, lines = conf.options, conf.option_lines
    write_interface(
        out,
        opts.interface if opts.interface and IFNAME_RE.match(opts.interface) else None,
        f"Interface, line {lines.get('interface')}",
        "knockd listened on the interface of its -i option, or eth0.",
        "knocks",
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


def _write_door(out: CommentedYaml, doors: _Doors, index: int) -> Problem | None:
    """One door's YAML; the note on what was not mapped, if its commands are kept verbatim."""
    _write_knocks(out, doors, index)
    plan = doors.plans[index]
    if plan.kind == "closes" and plan.bans:
        plan = Plan(
            "verbatim",
            reason="it lifts a ban, which no knocknft door does: a ban ends after its deny_for, "
            "or with `knocknft close ADDRESS`",
            reason_line=doors.lines(index).get("start_command"),
            reason_key="start_command",
        )
    elif plan.kind == "closes" and not doors.openers.get(index):
        plan = Plan(
            "verbatim",
            reason="it deletes a rule no door of this file adds",
            reason_line=doors.lines(index).get("start_command"),
            reason_key="start_command",
        )
    if plan.kind in ("timed", "opens") and plan.bans:
        return _write_ban(out, doors, index, plan)
    if plan.kind in ("timed", "opens"):
        _write_grant(out, doors, index, plan)
    elif plan.kind == "closes":
        _write_close(out, doors, index, plan)
    elif plan.kind == "nothing":
        out.comment(
            "knockd ran no command for this door; `true` keeps the door, its knocks and its "
            "log lines, since a knocknft door must do something.",
            4,
        )
        out.key("start_command", "'true'", 4)
    else:
        return _write_verbatim(out, doors, index, plan)
    return None


def _write_knocks(out: CommentedYaml, doors: _Doors, index: int) -> None:
    """The door's key and what a knock is: the sequence, its timeout, flags and target."""
    door, lines, name = doors.door(index), doors.lines(index), doors.names[index]
    out.lines.append("")
    out.comment(f"[{door.name}], {doors.source} line {lines['name']}.", 2)
    if name != door.name:
        out.comment(f"Renamed: an earlier section is also called [{door.name}].", 2)
    out.lines.append(f"  {scalar(name)}:")
    if door.one_time_sequences is not None:
        out.key("one_time_sequences", scalar(str(door.one_time_sequences)), 4)
    else:
        out.key("sequence", _ports_list(door.sequence), 4)
    if "seq_timeout" in lines:
        out.key("seq_timeout", format_duration(door.seq_timeout), 4)
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


def _write_close(out: CommentedYaml, doors: _Doors, index: int, plan: Plan) -> None:
    door, lines = doors.door(index), doors.lines(index)
    out.comment(f"line {lines['start_command']}: {door.start_command}", 4)
    out.comment(
        f"That deletes the rule {doors.door_names(doors.openers[index])} adds: this door revokes "
        "the knocker's grant.",
        4,
    )
    out.key("close", _ports_list(plan.services), 4)


def _write_verbatim(out: CommentedYaml, doors: _Doors, index: int, plan: Plan) -> Problem:
    door = doors.door(index)
    out.comment(f"Kept as written, not mapped: {plan.reason}.", 4)
    for command in door_commands(door, doors.lines(index)).values():
        out.comment(f"line {command.line}", 4)
        out.key(command.key, scalar(command.text), 4)
    if door.stop_command or door.stop_command_6:
        out.key("cmd_timeout", format_duration(door.cmd_timeout), 4)
    return Problem(
        doors.conf.config.source, plan.reason_line, f"[{door.name}] {plan.reason_key}", plan.reason
    )


def _write_grant(out: CommentedYaml, doors: _Doors, index: int, plan: Plan) -> None:
    door = doors.door(index)
    for command in door_commands(door, doors.lines(index)).values():
        out.comment(f"line {command.line}: {command.text}", 4)
    _one_family_note(out, plan, "got in", "grants")
    out.key("open", _ports_list(plan.services), 4)
    if plan.kind == "timed":
        out.comment("The stop command deletes that rule cmd_timeout later: the grant's end.", 4)
        out.key("open_for", format_duration(door.cmd_timeout), 4)
        return
    closers = doors.closers.get(index)
    until = (
        f"until {doors.door_names(closers)} was knocked, or for ever when nobody did"
        if closers
        else "for ever: no command of this file deletes it (only a firewall reload did)"
    )
    out.comment(
        f"knockd kept the rule {until}. A grant needs an end: "
        f"{format_duration(UNBOUNDED_OPEN_FOR)} leaves time to connect (connections outlive the "
        "grant) and bounds a forgotten close. Knocking again extends it; change it to suit.",
        4,
    )
    out.key("open_for", format_duration(UNBOUNDED_OPEN_FOR), 4)


def _one_family_note(out: CommentedYaml, plan: Plan, did: str, does: str) -> None:
    """Said when knockd's commands could only act on one address family."""
    families = {r.family for r in plan.rules}
    if families != {4, 6}:
        out.comment(
            f"Under knockd only IPv{families.pop()} knockers {did} ({plan.rules[0].tool} "
            f"refuses the other family's address); knocknft {does} the knocker's address in "
            "either family.",
            4,
        )


def _write_ban(out: CommentedYaml, doors: _Doors, index: int, plan: Plan) -> Problem | None:
    """A door whose rule drops the knocker: a ban from the whole host, or from the protected
    services when the rule drops exactly the services this file's doors open."""
    door = doors.door(index)
    opened = {
        s for p in doors.plans if p.kind in ("timed", "opens") and not p.bans for s in p.services
    }
    why = None
    if plan.services and set(plan.services) != opened:
        why = (
            f"it drops the knocker on {', '.join(map(str, plan.services))}, and a knocknft ban "
            "denies either every protected service "
            f"({', '.join(map(str, sorted(opened))) or 'none here'}) or the whole host"
        )
    trapped = [
        d.name
        for d in doors.conf.config.doors
        if d is not door and door.sequence and d.sequence[: len(door.sequence)] == door.sequence
    ]
    if trapped:
        why = f"door [{trapped[0]}] begins with its sequence: its knockers would be banned too"
    if why is not None:
        line = doors.lines(index).get("start_command")
        return _write_verbatim(out, doors, index, Plan("verbatim", (), why, line, "start_command"))
    for command in door_commands(door, doors.lines(index)).values():
        out.comment(f"line {command.line}: {command.text}", 4)
    if plan.services:
        out.comment(
            "That drops the knocker on the services this file's doors open: a ban from the "
            "protected services.",
            4,
        )
    else:
        out.comment("That drops every packet of the knocker: a ban from the whole host.", 4)
    _one_family_note(out, plan, "were banned", "bans")
    if plan.kind == "timed":
        out.comment("The stop command deletes that rule cmd_timeout later: the ban's end.", 4)
        out.key("deny_for", format_duration(door.cmd_timeout), 4)
    else:
        out.comment(
            "knockd kept the rule for ever (until a firewall reload). A ban needs an end: "
            f"{format_duration(UNBOUNDED_DENY_FOR)} keeps a scanner out without locking out "
            "for good an address someone knocked in the name of. Change it to suit.",
            4,
        )
        out.key("deny_for", format_duration(UNBOUNDED_DENY_FOR), 4)
    out.key("deny", "services" if plan.services else "host", 4)
    return None


def _unique_names(doors: tuple[Door, ...]) -> list[str]:
    """knockd allows two sections of one name (two doors); YAML keys must differ."""
    seen: dict[str, int] = {}
    names = []
    for door in doors:
        seen[door.name] = seen.get(door.name, 0) + 1
        names.append(door.name if seen[door.name] == 1 else f"{door.name}-{seen[door.name]}")
    return names
