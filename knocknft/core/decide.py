"""What engine events mean: a list of effects, which the daemon's executor carries out in order.

Pure: what is pending is read through `PendingView`, and who may be granted through a
`SourceCheck` (knocknft.core.sources.refusal over the host's addresses); no nft, no process, no
file, no clock.

An accepted SPA request is a `SpaOpened` (knocknft.daemon.spa makes it): an `Opened` whose door
is cut to the services and time asked for, decided as any opening, its log line and audit event
naming the key. A completed sequence (or an SPA request) for a source that may never be granted
(broadcast, multicast, reserved, loopback, link-local, unspecified, this host's own) is one
`RefusedSource` effect and nothing else: no OPEN line, no grant, no command.

The order is the daemon's promise, and `decide` keeps it:
1. the closing doors' revokes, then the opened doors' grants, then the banning doors' bans, each
   in one nft call: the set element is what the knocker waits for (or is kept out by), so it
   goes in before any line or command;
2. each event in turn: its log line and audit event; an opened door's grants are reported after
   its OPEN SESAME line (`ReportGrant`, carried out only if the grants went in), and a ban
   after it likewise (`ReportBan`); a one-time line
   to mark as used;
3. each opened door: the stop command's schedule, then its start command (the stop is on record
   before the start can run, so no start is ever left without its stop), or, when a stop command
   is still pending from an earlier knock, that stop moved later instead of a second start (the
   refresh: knockd would run the start command again and add a duplicate firewall rule). A stop
   names (door, address, due) only: the executor renders its command from the config.

Under a flood nearly every event is Progress, Evicted, TimedOut or Invalidated: each of those is
its own effect, a per-knock log line (`KnockLine`), so deciding allocates nothing for it and the
executor formats the line only if its rate limit lets the line through.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from knocknft.config import Door, IPAddress, PortSpec
from knocknft.core.bans import Ban
from knocknft.core.events import (
    DoorDisabled,
    Event,
    Evicted,
    Invalidated,
    OneTimeUsed,
    Opened,
    Progress,
    SpaOpened,
    TimedOut,
)
from knocknft.core.grants import Grant

if TYPE_CHECKING:
    from pathlib import Path


class PendingView(Protocol):
    """What `decide` reads of the pending stop commands (daemon.stops.PendingStops provides it)."""

    def is_pending(self, door: str, address: IPAddress) -> bool: ...


# Why a source may never be granted, or None (knocknft.core.sources.refusal, partly applied).
SourceCheck = Callable[[IPAddress], str | None]


def _any_source(address: IPAddress) -> str | None:
    return None


# -- effects ----------------------------------------------------------------------------------

# A per-knock log line: the attempt event itself, shown only as the executor's rate limit allows
# (Evicted and Invalidated only under -D).
KnockLine = Progress | TimedOut | Invalidated | Evicted
_KNOCK_LINES = frozenset((Progress, TimedOut, Invalidated, Evicted))


@dataclass(frozen=True, slots=True)
class Revocation:
    """One grant a closing door takes back: `service` for `address`, on behalf of `door`."""

    address: IPAddress
    service: PortSpec
    door: str


@dataclass(frozen=True, slots=True)
class RevokeServices:
    """Remove these grants from the allowlist, in one nft call; each is logged once it is gone."""

    revocations: tuple[Revocation, ...]


@dataclass(frozen=True, slots=True)
class RefusedSource:
    """A completed sequence from a source that may never be granted (`reason` says which class):
    counted, and logged as the executor's rate limit allows."""

    source: IPAddress
    door: str
    reason: str


@dataclass(frozen=True, slots=True)
class GrantServices:
    """Add these grants to the allowlist, in one nft call (at most one per batch of events)."""

    grants: tuple[Grant, ...]


@dataclass(frozen=True, slots=True)
class ReportGrant:
    """The log line and audit event of one grant: only if this batch's GrantServices went in."""

    grant: Grant


@dataclass(frozen=True, slots=True)
class BanSources:
    """Add these bans to the deny sets, in one nft call (at most one per batch of events)."""

    bans: tuple[Ban, ...]


@dataclass(frozen=True, slots=True)
class ReportBan:
    """The log line and audit event of one ban: only if this batch's BanSources went in."""

    ban: Ban


@dataclass(frozen=True, slots=True)
class RunCommand:
    """Start a door's command; `client` (the address as text) orders one client's commands."""

    door: str
    command: str
    client: str


@dataclass(frozen=True, slots=True)
class StopCommand:
    """The door's stop command for `address`, to run at `due`."""

    door: str
    address: IPAddress
    due: float


@dataclass(frozen=True, slots=True)
class ScheduleStop(StopCommand):
    """Record a stop command to run when it falls due."""


@dataclass(frozen=True, slots=True)
class ExtendStop(StopCommand):
    """The refresh: the stop command pending for (`door`, `address`) now runs at `due` instead."""


@dataclass(frozen=True, slots=True)
class MarkOneTime:
    """Line `line` of the door's one-time sequence file is used. The executor writes the mark
    before the opening's other effects (it must be on disk first) and reports it here."""

    door: str
    path: Path
    line: int


@dataclass(frozen=True, slots=True)
class LogLine:
    """A log line, formatted by the executor: `text` % `args`. Addresses among `args` are shown
    as the executor shows sources (with their names under knockd's -l)."""

    level: Literal["info", "warning"]
    text: str
    args: tuple[object, ...]
    # One line per completed sequence (OPEN SESAME, a refresh): the executor's rate limit for
    # OPEN and grant lines applies, so a flood of completions cannot flood the log.
    limited: bool = False


@dataclass(frozen=True, slots=True)
class Audit:
    """One line of the audit log (options.event_log), when there is one: `event` and its fields."""

    event: str
    fields: dict[str, object]


Effect = (
    KnockLine
    | RevokeServices
    | GrantServices
    | ReportGrant
    | BanSources
    | ReportBan
    | RunCommand
    | ScheduleStop
    | ExtendStop
    | MarkOneTime
    | LogLine
    | Audit
    | RefusedSource
)


# -- deciding ---------------------------------------------------------------------------------


def decide(  # noqa: C901 - one branch per event kind, in the order effects must run
    events: Sequence[Event],
    pending: PendingView,
    *,
    native_grants: bool,
    refuse: SourceCheck = _any_source,
) -> list[Effect]:
    """The effects of `events`, in the order they are to be carried out (see the module's text).

    `native_grants` False (a knockd.conf): the commands are a door's only effect, as under
    knockd: no grant and no revoke. `refuse` names why a source may never be granted.
    """
    # A flood's batches hold attempt events only: each is its own effect, and this check and the
    # copy run in C. The events are leaf classes, so their exact type is all there is to ask.
    if _KNOCK_LINES.issuperset(map(type, events)):
        return list(events)  # type: ignore[arg-type]  # narrowed by the set, unseen by mypy
    effects: list[Effect] = []
    append = effects.append
    opened: list[Opened] = []
    grants_of: dict[Opened, list[Grant]] = {}
    bans: list[Ban] = []
    for event in events:
        if isinstance(event, KnockLine):
            append(event)
        elif isinstance(event, Opened):
            source, door = event.source, event.door.name
            reason = refuse(source)
            if reason is not None:
                append(RefusedSource(source, door, reason))
                continue
            opened.append(event)
            effects += _open_lines(event)
            if event.door.deny_for is not None:
                # Only a native config bans: a knockd.conf door has no deny_for.
                ban = Ban(source, door, event.door.deny_for, event.door.deny)
                bans.append(ban)
                append(ReportBan(ban))
            elif native_grants:
                grants = grants_of.setdefault(event, grants_for(source, event.door))
                effects += [ReportGrant(g) for g in grants]
        elif isinstance(event, OneTimeUsed):
            path = event.door.one_time_sequences
            if path is not None:
                append(MarkOneTime(event.door.name, path, event.line))
        elif isinstance(event, DoorDisabled):
            door, reason = event.door.name, event.reason
            text = "%s: door disabled: %s; the daemon keeps running"
            append(LogLine("warning", text, (door, reason)))
            append(Audit("door_disabled", {"door": door, "reason": reason}))
    if not opened:
        return effects
    _commands(opened, pending, effects)
    first: list[Effect] = _kernel_first(opened, grants_of) if native_grants else []
    if bans:
        first.append(BanSources(tuple(bans)))
    return first + effects


def _open_lines(event: Opened) -> list[Effect]:
    """The opening's log line and audit event: knockd's OPEN SESAME, or the SPA request's
    (naming its key, never a key's bytes)."""
    source, door = event.source, event.door.name
    if not isinstance(event, SpaOpened):
        return [
            LogLine("info", "%s: %s: OPEN SESAME", (source, door), limited=True),
            Audit("open", {"source": source, "door": door}),
        ]
    key, mode, sender = event.key, event.mode, event.sender
    text = "%s: %s: SPA request accepted (key %s, %s, sent from %s)"
    fields: dict[str, object] = {"source": source, "door": door, "key": key, "mode": mode}
    return [
        LogLine("info", text, (source, door, key, mode, sender), limited=True),
        Audit("spa_open", {**fields, "sender": sender}),
    ]


def _kernel_first(opened: Sequence[Opened], grants_of: dict[Opened, list[Grant]]) -> list[Effect]:
    """The closing doors' revokes, then the grants: what goes before every other effect but the
    bans."""
    first: list[Effect] = []
    revocations = tuple(
        Revocation(e.source, service, e.door.name) for e in opened for service in e.door.close
    )
    if revocations:
        first.append(RevokeServices(revocations))
    grants = tuple(g for door_grants in grants_of.values() for g in door_grants)
    if grants:
        first.append(GrantServices(grants))
    return first


def grants_for(source: IPAddress, door: Door) -> list[Grant]:
    """The allowlist elements a door's opening adds: one per `open` service, for `open_for`."""
    if not door.open or door.open_for is None:
        return []
    return [Grant(source, service, door.name, door.open_for) for service in door.open]


def _commands(opened: Sequence[Opened], pending: PendingView, effects: list[Effect]) -> None:
    # Stops scheduled by this batch count as pending: a source that opens a door twice in one
    # batch gets one start command and a refresh, as it would in two batches.
    scheduled: set[tuple[str, IPAddress]] = set()
    for event in opened:
        source, door = event.source, event.door
        start = command_for(door.start_command, door.start_command_6, source)
        stop = command_for(door.stop_command, door.stop_command_6, source)
        due = event.at + door.cmd_timeout
        if stop and ((door.name, source) in scheduled or pending.is_pending(door.name, source)):
            effects.append(ExtendStop(door.name, source, due))
            text = "%s: %s: still open; stop command moved to %ds from now"
            effects.append(LogLine("info", text, (source, door.name, door.cmd_timeout), True))
            fields: dict[str, object] = {
                "source": source,
                "door": door.name,
                "stop_in": door.cmd_timeout,
            }
            effects.append(Audit("refresh", fields))
            continue
        if stop:
            effects.append(ScheduleStop(door.name, source, due))
            scheduled.add((door.name, source))
        if start:
            effects.append(RunCommand(door.name, expand_command(start, source), source.compressed))


def expand_command(template: str, address: IPAddress) -> str:
    """Replace every `%IP%` with the address; the address type guarantees safe characters."""
    return template.replace("%IP%", address.compressed)


def stop_command_for(door: Door, address: IPAddress) -> str | None:
    """The door's stop command for `address`, rendered; None if the door has none."""
    stop = command_for(door.stop_command, door.stop_command_6, address)
    return expand_command(stop, address) if stop else None


def command_for(door_start: str | None, door_start6: str | None, address: IPAddress) -> str | None:
    """knockd's choice: the `_6` variant for IPv6 sources, falling back to the plain one."""
    if address.version == 6 and door_start6:
        return door_start6
    return door_start
