"""How `knocknft status` shows things to people and scripts: the gate's health, the doors
(their sequences only when asked), the grants and the bans; times as 1h02m03s."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from knocknft.admin.health import EXIT_GATE_DOWN, Health
from knocknft.config import Config, Door, format_seconds
from knocknft.core.bans import Ban
from knocknft.core.grants import Grant


def format_table(grants: list[Grant]) -> str:
    """The human form of `knocknft status`: one row per grant."""
    if not grants:
        return "no open grants\n"
    rows = [("ADDRESS", "DOOR", "SERVICE", "EXPIRES IN")]
    rows += [(str(g.address), g.door, str(g.service), format_seconds(g.expires)) for g in grants]
    return _columns(rows)


def format_bans(bans: list[Ban]) -> str:
    """The banned sources, after the grants; nothing at all when there are none."""
    if not bans:
        return ""
    rows = [("BANNED", "DOOR", "DENIED", "EXPIRES IN")]
    rows += [(str(b.address), b.door, b.scope, format_seconds(b.expires)) for b in bans]
    return "\n" + _columns(rows)


def knock_of(door: Door, config: Config, show_sequences: bool) -> str:
    """How the door is knocked: the sequence itself only when asked for, as it is the secret."""
    if door.is_spa:
        return f"SPA {config.options.spa_port}/udp"
    if door.one_time_sequences is not None:
        where = f" of {door.one_time_sequences}" if show_sequences else ""
        return f"one-time{where} ({len(door.one_time)} left)"
    if show_sequences:
        return ",".join(map(str, door.sequence))
    return f"{len(door.sequence)} knocks (hidden)"


def effect_of(door: Door) -> str:
    """What completing the door does, in a few words."""
    said = []
    if door.open:
        said.append(f"opens {', '.join(map(str, door.open))} for {format_seconds(door.open_for)}")
    if door.close:
        said.append(f"closes {', '.join(map(str, door.close))}")
    if door.deny_for is not None:
        said.append(f"bans ({door.deny}) for {format_seconds(door.deny_for)}")
    if door.start_command is not None or door.start_command_6 is not None:
        said.append("runs commands")
    return "; ".join(said) or "-"


def format_doors(config: Config, show_sequences: bool) -> str:
    if not config.doors:
        return "no doors\n"
    rows = [("DOOR", "KNOCK", "DOES")]
    rows += [(d.name, knock_of(d, config, show_sequences), effect_of(d)) for d in config.doors]
    return _columns(rows)


def doors_json(config: Config, show_sequences: bool) -> list[dict[str, Any]]:
    doors = []
    for d in config.doors:
        door: dict[str, Any] = {
            "name": d.name,
            "spa": d.is_spa,
            "steps": len(d.sequence),
            "open": [str(p) for p in d.open],
            "open_for": d.open_for,
            "close": [str(p) for p in d.close],
            "deny_for": d.deny_for,
            "deny": d.deny if d.deny_for is not None else None,
            "commands": d.start_command is not None or d.start_command_6 is not None,
        }
        if show_sequences:
            door["sequence"] = [str(p) for p in d.sequence]
        doors.append(door)
    return doors


def format_health(health: Health, now: float) -> str:
    """The lines that say whether the gate is in place, each check on one."""
    table = "loaded" if health.table_loaded else "NOT LOADED"
    lines = [f"table inet {health.table}: {table}"]
    if health.daemon is None:
        lines.append("daemon: NOT RUNNING")
    else:
        about = f" ({health.daemon.about})" if health.daemon.about else ""
        lines.append(f"daemon: running, pid {health.daemon.pid}{about}")
    lines.append(f"interfaces: {_interfaces(health)}")
    if health.confirm is not None:
        lines.append(f"confirm: {health.confirm.describe(now)}")
    problems = health.problems(now)
    verdict = {0: "in place", EXIT_GATE_DOWN: "DOWN"}.get(health.exit_code(), "DEGRADED")
    lines.append(f"gate: {verdict}" + (f": {problems[0]}" if problems else ""))
    lines += [f"  also: {p}" for p in problems[1:]]
    return "".join(f"{line}\n" for line in lines)


def _interfaces(health: Health) -> str:
    if not health.interfaces:
        return "every interface"
    said = []
    for name in health.interfaces:
        if name in health.interfaces_missing:
            said.append(f"{name} MISSING")
        elif name in health.late_missing:
            said.append(f"{name} not there yet (late_interfaces)")
        else:
            said.append(f"{name} present")
    return ", ".join(said)


def _columns(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() + "\n"
        for row in rows
    )
