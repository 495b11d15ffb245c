"""What a door's commands amount to, alone and together with the other doors.

A door whose start command adds a rule and whose stop command deletes that very rule is a timed
grant; a door that only adds is paired with the doors that delete its rule (knockd's
openSSH/closeSSH). A pair is only mapped when the delete removes exactly the rule the add inserted:
`iptables -D` needs the identical rule, so where the two differ knockd never removed the rule, and a
native grant that expires would not behave as the original did. Where the rule drops the knocker
instead, the door bans (`Plan.bans`): for cmd_timeout when its stop command deletes the rule, else
for good under knockd. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from knocknft.config import Door, PortSpec
from knocknft.knockd.recognizer import FirewallRule, Recognised, Unrecognised, recognise


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

    @property
    def bans(self) -> bool:
        """Whether the rule drops the knocker (a banning door) rather than accepting it."""
        return bool(self.rules) and self.rules[0].verdict == "drop"


def door_commands(door: Door, lines: Mapping[str, int]) -> dict[str, Command]:
    """The door's command directives that are set, each with its line and what it does."""
    found = {}
    for key in ("start_command", "stop_command", "start_command_6", "stop_command_6"):
        text = getattr(door, key)
        if text is not None:
            found[key] = Command(key, text, lines.get(key, 0), recognise(text))
    return found


def plan_door(door: Door, lines: Mapping[str, int]) -> Plan:
    """Classify one door from its own commands; cross-door pairing comes after."""
    commands = door_commands(door, lines)
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
        if (other.kind, other.services, other.bans) != (first.kind, first.services, first.bans):
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


def closing_pairs(plans: list[Plan]) -> dict[int, list[int]]:
    """For each closing door, the doors that add the rule it deletes (by index). A door that
    deletes a drop rule lifts a ban, which no knocknft door does: it pairs with none."""
    found: dict[int, list[int]] = {}
    for i, closer in enumerate(plans):
        if closer.kind != "closes" or closer.bans:
            continue
        found[i] = [
            j
            for j, opener in enumerate(plans)
            if opener.kind in ("opens", "timed")
            and all(any(c.same_rule(o) for o in opener.rules) for c in closer.rules)
        ]
    return found
