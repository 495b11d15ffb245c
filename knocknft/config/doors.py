"""The `doors:` section's parser: one door's keys, one at a time, then the checks that need every
door (knock ports that are also services, weak sequences). Pure: a door's one-time-sequences file is
read through the `ReadFile` the caller passes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import yaml

from knocknft.config.model import (
    DENY_SCOPES,
    DOOR_NAME_RE,
    MAX_BAN_SECONDS,
    MAX_CMD_TIMEOUT,
    MAX_GRANT_SECONDS,
    MAX_SEQ_TIMEOUT,
    MAX_SEQUENCE_LENGTH,
    Door,
    OneTimeSequence,
    PortSpec,
)
from knocknft.config.scalars import (
    Invalid,
    parse_abs_path,
    parse_address,
    parse_bool,
    parse_duration,
    parse_one_time_line,
    parse_port_spec,
    parse_tcpflags,
    unused_one_time_lines,
)
from knocknft.config.spa import (
    check_open_for,
    is_spa_door,
    parse_spa_door,
    refuse_spa_only_keys,
)
from knocknft.config.walker import Walker, line_of

T = TypeVar("T")
ReadFile = Callable[[Path], str]

DOOR_KEYS = (
    "sequence",
    "one_time_sequences",
    "seq_timeout",
    "tcpflags",
    "open",
    "open_for",
    "close",
    "close_sessions",
    "deny_for",
    "deny",
    "target",
    "start_command",
    "stop_command",
    "start_command_6",
    "stop_command_6",
    "cmd_timeout",
    "fwknop",
    "clients",
    "max_open_for",
)


def _parse_command(text: str) -> str:
    if not text.strip():
        raise Invalid("the command is empty", "remove the key or give a shell command")
    return text


def _parse_deny_scope(text: str) -> str:
    if text not in DENY_SCOPES:
        raise Invalid(
            f"{text!r} is not what a ban denies",
            "services (the protected services) or host (every packet to this host)",
        )
    return text


# The keys that are one scalar each, in the order their errors are reported.
_SETTINGS: tuple[tuple[str, Callable[[str], object]], ...] = (
    ("seq_timeout", lambda t: parse_duration(t, MAX_SEQ_TIMEOUT)),
    ("open_for", lambda t: parse_duration(t, MAX_GRANT_SECONDS)),
    ("cmd_timeout", lambda t: parse_duration(t, MAX_CMD_TIMEOUT)),
    ("deny_for", lambda t: parse_duration(t, MAX_BAN_SECONDS)),
    ("deny", _parse_deny_scope),
    ("tcpflags", parse_tcpflags),
    ("target", parse_address),
    ("close_sessions", parse_bool),
    ("start_command", _parse_command),
    ("stop_command", _parse_command),
    ("start_command_6", _parse_command),
    ("stop_command_6", _parse_command),
)


@dataclass(frozen=True)
class _DoorNodes:
    """One door's YAML while its fields are parsed: where errors go and which keys it has."""

    w: Walker
    base: str  # the key path, doors.NAME
    name_node: yaml.Node
    entries: dict[str, tuple[yaml.Node, yaml.Node]]

    def has(self, key: str) -> bool:
        return key in self.entries

    def value(self, key: str, parse: Callable[[str], T]) -> T | None:
        if key not in self.entries:
            return None
        return self.w.scalar(self.entries[key][1], f"{self.base}.{key}", parse)

    def error_at(self, key: str, message: str, hint: str = "") -> None:
        """An error pointing at the line of `key` itself."""
        self.w.error(self.entries[key][0], f"{self.base}.{key}", message, hint)

    def error_at_door(self, message: str, hint: str) -> None:
        """An error pointing at the door's name: something the door lacks."""
        self.w.error(self.name_node, self.base, message, hint)


def parse_door(
    w: Walker, name: str, name_node: yaml.Node, node: yaml.Node, read_file: ReadFile
) -> Door | None:
    """One door, or None when it has errors (which are on `w`)."""
    base = f"doors.{name}"
    if not DOOR_NAME_RE.match(name):
        w.error(
            name_node,
            base,
            f"door name {name!r} is not usable",
            "start with a letter or digit; use letters, digits, _ . - (at most 32)",
        )
    door = _DoorNodes(w, base, name_node, w.mapping(node, base, DOOR_KEYS))
    errors_before = len(w.errors)
    fields: dict[str, object] = {"name": name, "line": line_of(name_node)}
    spa = is_spa_door(door.entries)
    if spa:
        fields.update(parse_spa_door(w, base, name_node, door.entries))
    else:
        fields.update(_knocks(door, read_file))
        refuse_spa_only_keys(w, base, door.entries)
    fields.update(_settings(door))
    fields.update(_services(door))
    check_open_for(w, base, door.entries, fields)
    _check_keys_together(door, close_sessions=fields.get("close_sessions") is True, spa=spa)
    if len(w.errors) != errors_before:
        return None
    return Door(**fields)  # type: ignore[arg-type]  # keys and types checked above


def _knocks(door: _DoorNodes, read_file: ReadFile) -> dict[str, object]:
    """What a knocker sends: a sequence or a one-time-sequences file, exactly one of the two."""
    fields: dict[str, object] = {}
    if door.has("sequence"):
        fields["sequence"] = _sequence(door)
    path = door.value("one_time_sequences", parse_abs_path)
    if path is not None:
        fields["one_time_sequences"] = path
        fields["one_time"] = _read_one_time(door, path, read_file)
    if door.has("sequence") and door.has("one_time_sequences"):
        door.error_at(
            "one_time_sequences",
            "a door takes either sequence or one_time_sequences, not both",
            "remove one of them",
        )
    elif not door.has("sequence") and not door.has("one_time_sequences"):
        door.error_at_door(
            "the door has no sequence",
            "add sequence: [7000/tcp, 8000/udp, 9000/tcp] (or one_time_sequences: FILE)",
        )
    return fields


def _sequence(door: _DoorNodes) -> tuple[PortSpec, ...]:
    key = f"{door.base}.sequence"
    node = door.entries["sequence"][1]
    errors_before = len(door.w.errors)
    steps = tuple(door.w.scalar_list(node, key, parse_port_spec))
    if not steps and len(door.w.errors) == errors_before:
        door.w.error(
            node,
            key,
            "the sequence is empty",
            "list the knock ports in order, e.g. [7000/tcp, 8000/udp, 9000/tcp]",
        )
    elif len(steps) > MAX_SEQUENCE_LENGTH:
        door.w.error(node, key, f"more than {MAX_SEQUENCE_LENGTH} steps")
    return steps


def _read_one_time(
    door: _DoorNodes, path: Path, read_file: ReadFile
) -> tuple[OneTimeSequence, ...]:
    """The file's unused lines, read now so that rendering and matching stay pure."""
    node = door.entries["one_time_sequences"][1]
    key = f"{door.base}.one_time_sequences"
    try:
        text = read_file(path)
    except (OSError, UnicodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        door.w.error(
            node,
            key,
            f"cannot read {path}: {why or exc}",
            "a regular UTF-8 file, not a link, owned by root and writable by nobody else",
        )
        return ()
    sequences: list[OneTimeSequence] = []
    for number, line in unused_one_time_lines(text):
        try:
            sequences.append(OneTimeSequence(number, parse_one_time_line(line)))
        except Invalid:
            # The line number only: the file's text is a secret, and errors reach the log.
            door.w.error(
                node,
                key,
                f"{path}: line {number} is not a sequence of knock ports",
                "one sequence per line, e.g. 7000,8000:udp,9000; mark a line unused with a "
                "leading #",
            )
    if not sequences:
        door.w.warn(node, key, f"{path} has no unused sequence left: the door cannot open")
    return tuple(sequences)


def _settings(door: _DoorNodes) -> dict[str, object]:
    fields: dict[str, object] = {}
    for key, parse in _SETTINGS:
        value = door.value(key, parse)
        if value is not None:
            fields[key] = value
    return fields


def _services(door: _DoorNodes) -> dict[str, tuple[PortSpec, ...]]:
    """`open` and `close`, each without repeats; no service may be in both."""
    services: dict[str, tuple[PortSpec, ...]] = {}
    for key in ("open", "close"):
        if door.has(key):
            listed = door.w.scalar_list(door.entries[key][1], f"{door.base}.{key}", parse_port_spec)
            services[key] = tuple(dict.fromkeys(listed))
    both = sorted(set(services.get("open", ())) & set(services.get("close", ())))
    if both:
        door.error_at(
            "close",
            f"{', '.join(map(str, both))} is both opened and closed by this door",
            "a door either grants a service or revokes it; remove it from one list",
        )
    return services


def _check_keys_together(door: _DoorNodes, *, close_sessions: bool, spa: bool) -> None:
    """Keys that only mean something with another: a door must do something, and a setting for
    what it opens needs an open."""
    has_open = door.has("open")
    has_command = any(door.has(k) for k in ("start_command", "start_command_6", "stop_command"))
    bans = door.has("deny_for") and not spa  # an SPA door's deny_for is an error of its own
    if bans and (has_open or door.has("close")):
        door.error_at(
            "deny_for",
            "a door either opens or bans: this one has deny_for and "
            + ("open" if has_open else "close"),
            "make the ban a door of its own, with a sequence of its own",
        )
    if door.has("deny") and not bans:
        door.error_at(
            "deny",
            "deny has no ban to scope: the door has no deny_for",
            "add deny_for: 1h (how long the knocker is banned), or remove deny",
        )
    if has_open and not door.has("open_for"):
        door.error_at(
            "open",
            "open needs open_for: how long a knocker's grant lasts",
            "add e.g. open_for: 30s",
        )
    if close_sessions and not has_open:
        door.error_at(
            "close_sessions",
            "close_sessions has nothing to close: the door has no open",
            "add open: [22/tcp] with open_for, or remove close_sessions",
        )
    if door.has("open_for") and not has_open:
        door.error_at(
            "open_for",
            "open_for has nothing to time: the door has no open",
            "add open: [22/tcp] or remove open_for",
        )
    if not has_open and not has_command and not door.has("close") and not bans and not spa:
        door.error_at_door(
            "the door does nothing: it has neither open, close, deny_for nor a start_command",
            "add open: [22/tcp] with open_for: 30s, or a start_command",
        )
    if door.has("cmd_timeout") and not door.has("stop_command"):
        door.w.warn(
            door.entries["cmd_timeout"][0],
            f"{door.base}.cmd_timeout",
            "cmd_timeout has no effect without stop_command",
        )


def check_doors(w: Walker, doors: list[tuple[Door, yaml.Node]]) -> None:
    """Cross-door errors and the weak-sequence warnings."""
    all_knock_ports = {p for d, _ in doors for p in d.knock_ports}
    opened = {p for d, _ in doors for p in d.open}
    closing_sessions = {p for d, _ in doors if d.close_sessions for p in d.open}
    for door, node in doors:
        mixed = [] if door.close_sessions else sorted(closing_sessions.intersection(door.open))
        if mixed:
            # The kernel rule can only ask "does this address hold a grant for the service",
            # not which door gave it, so the setting is per service.
            w.warn(
                node,
                f"doors.{door.name}.close_sessions",
                f"{', '.join(map(str, mixed))} is also opened by a door with close_sessions: "
                "sessions to it end when the grant ends, whichever door gave it",
                "set close_sessions the same on every door that opens the service",
            )
        never_opened = sorted(set(door.close) - opened)
        if never_opened:
            w.warn(
                node,
                f"doors.{door.name}.close",
                f"no door opens {', '.join(map(str, never_opened))}: closing it has no effect",
                "close the services another door lists in open",
            )
        clash = sorted(set(door.open) & all_knock_ports)
        if clash:
            w.error(
                node,
                f"doors.{door.name}.open",
                f"{', '.join(map(str, clash))} is both a knock port and a protected service",
                "knock ports are dropped for everyone; pick knock ports no service uses",
            )
        if door.deny_for is not None and door.deny == "services" and not opened:
            w.error(
                node,
                f"doors.{door.name}.deny",
                "the ban denies the protected services, and no door opens any",
                "set deny: host to deny the knocker everything, or add a door that opens a service",
            )
        trapped = [
            d.name
            for d, _ in doors
            if door.deny_for is not None
            and d is not door
            and door.sequence
            and d.sequence[: len(door.sequence)] == door.sequence
        ]
        if trapped:
            w.error(
                node,
                f"doors.{door.name}.sequence",
                f"door {trapped[0]!r} begins with this ban's sequence: its knockers would be "
                "banned on their way in",
                "give the banning door a sequence no other door begins with",
            )
        if door.sequence and door.deny_for is None:
            # A banning door is a trap for scanners: short and ascending is what it should be.
            _warn_weak_sequence(w, door, node, [d for d, _ in doors])


def _warn_weak_sequence(w: Walker, door: Door, node: yaml.Node, doors: list[Door]) -> None:
    """Sequences a scan or a guess walks through: short, ascending, one protocol, or a prefix."""
    seq = door.sequence
    key = f"doors.{door.name}.sequence"
    if len(seq) < 3:
        w.warn(node, key, f"only {len(seq)} step(s): easy to guess", "use 3 or more knocks")
    if len(seq) > 1 and all(a.port < b.port for a, b in itertools.pairwise(seq)):
        w.warn(
            node,
            key,
            "the ports only go up: a port scan walks them in this order",
            "mix the order, e.g. [9000, 7000, 8000]",
        )
    if len(seq) > 1 and len({s.protocol for s in seq}) == 1:
        w.warn(node, key, f"every step is {seq[0].protocol}", "mix tcp and udp steps")
    for other in doors:
        if (
            other is not door
            and len(other.sequence) > len(seq)
            and other.sequence[: len(seq)] == seq
        ):
            w.warn(
                node,
                key,
                f"the sequence is a prefix of door {other.name!r}'s: knocking that door "
                f"opens this one on the way",
                "make the sequences differ in their first steps",
            )
