"""The knock engine: per-source sequence state with knockd's semantics, and none of its defects.

Pure: no sockets, no clock reads, no files. Knocks come in with their own timestamp; the caller's
timer calls `expire(now)`; everything that should happen comes back as events, which one executor
carries out (grants, commands, log lines).

knockd's rules kept (see shared/reference/KNOCKD.md):
- state per (source, door); the first step of a door starts an attempt; the next expected
  (port, protocol) advances it; the last one opens the door;
- while a source has attempts in progress (for doors whose `target` accepts the packet's
  destination), a packet is judged only against those attempts: any other knock-port hit
  invalidates them, and that packet does not start a new attempt;
- a TCP packet whose flags do not match a door's `tcpflags` is ignored for that door;
- doors sharing a prefix advance in parallel; seq_timeout counts from the first knock.

One rule added: a retransmission is not a knock. The table drops knock packets, so a blocking
connect (ssh, telnet, nc, a browser) sends its SYN again until it gives up; a TCP packet with the
source port and sequence number of the knock an attempt last counted is that retransmission and is
ignored (no stage, no break). A new connection to the same port has a new source port and initial
sequence number, and keeps knockd's meaning. UDP has no such identity: every datagram counts.
A TCP knock that breaks an attempt is remembered in its place (stage _BROKEN) until the attempt's
seq_timeout, so that its own retransmissions do not start a new attempt either; the source's next
other packet forgets it and is judged as if no attempt were in progress.

knockd's defects avoided: attempts are kept per door in insertion order (so expiry is a walk from
the front, driven by a timer, not only by packets), every attempt is independent (no list surgery
that drops others), and the number of attempts is capped with oldest-first eviction, so a spoofed
flood costs bounded memory and O(doors) work per packet.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address
from typing import Protocol

from knocknft.config import DEFAULT_MAX_ATTEMPTS, Door, IPAddress
from knocknft.core.events import (
    DoorDisabled,
    Event,
    Evicted,
    Invalidated,
    OneTimeUsed,
    Opened,
    Progress,
    TimedOut,
)


class Knock(Protocol):
    """What the engine reads of a packet (knocknft.netlink.packet.KnockPacket provides it)."""

    @property
    def source(self) -> IPAddress: ...
    @property
    def destination(self) -> IPAddress: ...
    @property
    def protocol(self) -> str: ...
    @property
    def dport(self) -> int: ...
    @property
    def tcp_flags(self) -> int: ...
    @property
    def timestamp(self) -> float: ...
    @property
    def sport(self) -> int: ...
    @property
    def seq(self) -> int: ...


@dataclass
class EngineCounters:
    knocks: int = 0
    stages: int = 0
    opens: int = 0
    timeouts: int = 0
    invalidations: int = 0
    evictions: int = 0
    flags_ignored: int = 0
    retransmissions_ignored: int = 0


# -- state ------------------------------------------------------------------------------------

Step = tuple[str, int]  # (protocol, port): compared against every packet, so a plain tuple


# An attempt is (stage, started, connection): a tuple of numbers, which the cyclic garbage
# collector stops tracking, so a full attempt table adds nothing to GC pauses. The source is its
# dict key. `connection` is the TCP connection of the last knock counted (source port and
# sequence number, see on_knock), or _NO_CONNECTION after a UDP one.
_Attempt = tuple[int, float, int]
_NO_CONNECTION = -1
# The stage of a broken attempt kept only for the connection that broke it (see the docstring):
# it ends silently, and counts against max_attempts like any attempt.
_BROKEN = -1

_V6_BIT = 1 << 128


def _address(key: int) -> IPAddress:
    return IPv6Address(key ^ _V6_BIT) if key & _V6_BIT else IPv4Address(key)


@dataclass(slots=True)
class _DoorState:
    door: Door
    steps: tuple[Step, ...] | None  # None: disabled (one-time file used up)
    one_time_index: int = 0
    # Insertion order is start order, and all attempts of a door share its seq_timeout, so the
    # front of this dict is always the next to expire. OrderedDict, not dict: popping the front
    # of a plain dict repeatedly degrades to O(n) per pop.
    attempts: OrderedDict[int, _Attempt] = field(default_factory=OrderedDict)
    # The door's settings every knock reads, copied here: one attribute read each, and no call.
    # A reload keeps a state only for an equal door, so the copies stay true.
    target: IPAddress | None = field(init=False)
    timeout: int = field(init=False)
    flags_required: int = field(init=False)
    flags_forbidden: int = field(init=False)

    def __post_init__(self) -> None:
        door = self.door
        self.target = door.target
        self.timeout = door.seq_timeout
        self.flags_required = door.tcpflags.required
        self.flags_forbidden = door.tcpflags.forbidden


def _steps_of(door: Door, one_time_index: int = 0) -> tuple[Step, ...] | None:
    if door.one_time_sequences is None:
        return tuple((s.protocol, s.port) for s in door.sequence)
    if one_time_index >= len(door.one_time):
        return None
    return tuple((s.protocol, s.port) for s in door.one_time[one_time_index].steps)


def _same_door(a: Door, b: Door) -> bool:
    """Equal in everything that matters for matching; where it sits in the file does not."""
    return replace(a, line=None) == replace(b, line=None)


class Engine:
    def __init__(self, doors: Sequence[Door], max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> None:
        self.max_attempts = max_attempts
        self.counters = EngineCounters()
        self._doors: list[_DoorState] = []
        self._tracked = 0
        # Events a reload raises (evictions, doors disabled): handed out by the next `expire`.
        self._queued: list[Event] = []
        # No attempt runs out before this time (it may be early after removals, never late):
        # the knock path's test for a walk, and the caller's timer.
        self._expire_at = math.inf
        self.reload(doors, max_attempts)

    # -- configuration ----------------------------------------------------------------------

    def reload(self, doors: Sequence[Door], max_attempts: int | None = None) -> None:
        """Take a new set of doors (and cap); attempts on doors that did not change survive,
        the oldest of them evicted if a lower cap leaves too many."""
        old = {s.door.name: s for s in self._doors}
        states: list[_DoorState] = []
        # An SPA door has no sequence: one authorized packet opens it, not knocks.
        for door in (d for d in doors if not d.is_spa):
            previous = old.get(door.name)
            if previous is not None and _same_door(previous.door, door):
                previous.door = door
                states.append(previous)
            else:
                state = _DoorState(door, _steps_of(door))
                if state.steps is None:
                    self._queued.append(DoorDisabled(door, "its one-time sequences are used up"))
                states.append(state)
        self._doors = states
        self._tracked = sum(len(s.attempts) for s in states)
        if max_attempts is not None:
            if max_attempts < 1:
                raise ValueError("max_attempts must be at least 1")
            self.max_attempts = max_attempts
            while self._tracked > max_attempts:
                self._evict_oldest(self._queued)
        self._expire_at = -math.inf  # walk at the next knock: new timeouts, queued events

    def disable(self, door_name: str, reason: str) -> None:
        """Shut a door: its attempts end and no knock opens it, until a reload changes it."""
        for state in self._doors:
            if state.door.name == door_name and state.steps is not None:
                state.steps = None
                self._tracked -= len(state.attempts)
                state.attempts.clear()
                self._queued.append(DoorDisabled(state.door, reason))
                self._expire_at = -math.inf  # the queued event goes out at the next walk

    @property
    def tracked(self) -> int:
        """Attempts in progress, over all sources and doors (a broken one still remembered for
        its breaking connection included: it takes its room under max_attempts)."""
        return self._tracked

    def active_steps(self, door_name: str) -> tuple[Step, ...] | None:
        state = next((s for s in self._doors if s.door.name == door_name), None)
        return state.steps if state is not None else None

    # -- time -------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When the caller's timer should next call `expire`: no later than the next attempt's
        timeout, at once when events are waiting (a reload that disabled a door), None when
        no attempt is in progress. It is the bound the knock path keeps anyway; after an attempt
        ends early it may fire once for nothing, and `expire` then makes it exact again."""
        return None if self._expire_at == math.inf else self._expire_at

    def expire(self, now: float) -> list[Event]:
        """Time out every attempt whose seq_timeout has run out by `now`."""
        events = self._take_queued()
        earliest = math.inf
        for state in self._doors:
            attempts = state.attempts
            timeout = state.timeout
            while attempts:
                key, (stage, started, _) = next(iter(attempts.items()))
                if now < started + timeout:
                    earliest = min(earliest, started + timeout)
                    break
                attempts.popitem(last=False)
                self._tracked -= 1
                if stage != _BROKEN:
                    self.counters.timeouts += 1
                    events.append(TimedOut(_address(key), state.door, stage))
        self._expire_at = earliest
        return events

    def _take_queued(self) -> list[Event]:
        events, self._queued = self._queued, []
        return events

    # -- knocks -----------------------------------------------------------------------------

    def on_knock(self, knock: Knock) -> list[Event]:  # noqa: C901, PLR0912, PLR0915 - the per-packet hot path, flat on purpose: a call per check costs more
        """Judge one knock packet; returns what happened, in order."""
        counters = self.counters
        counters.knocks += 1
        now = knock.timestamp
        # The hot path: a packet walks the doors only when some attempt may have run out.
        events = self.expire(now) if now >= self._expire_at else []
        source = knock.source
        # The attempts' key: ipaddress hashes through hex() in Python, an int hashes in C. Bit
        # 128 keeps IPv6 keys apart from IPv4 ones (::a.b.c.d would collide otherwise).
        key = int(source) | _V6_BIT if source.version == 6 else int(source)
        destination = knock.destination
        protocol = knock.protocol
        step: Step = (protocol, knock.dport)
        is_tcp = protocol == "tcp"
        flags = knock.tcp_flags
        # Source port and sequence number in one int: what a retransmitted SYN repeats exactly.
        connection = knock.sport << 32 | knock.seq if is_tcp else _NO_CONNECTION
        doors = self._doors

        judged = False
        for state in doors:
            attempts = state.attempts
            attempt = attempts.get(key)
            if attempt is None:
                continue
            target = state.target
            if target is not None and target != destination:
                continue
            stage, started, last = attempt
            if is_tcp:
                if connection == last:
                    judged = True
                    counters.retransmissions_ignored += 1
                    continue
                required = state.flags_required
                if flags & required != required or flags & state.flags_forbidden:
                    judged = True
                    counters.flags_ignored += 1
                    continue
            if stage == _BROKEN:
                del attempts[key]
                self._tracked -= 1
                continue
            judged = True
            steps = state.steps
            if steps is not None and steps[stage] == step:
                stage += 1
                counters.stages += 1
                events.append(Progress(source, state.door, stage))
                if stage < len(steps):
                    # A new tuple under an existing key, which keeps its place in the order.
                    attempts[key] = (stage, started, connection)
                else:
                    del attempts[key]
                    self._tracked -= 1
                    self._open(state, source, now, events)
            else:
                if is_tcp:
                    attempts[key] = (_BROKEN, started, connection)
                else:
                    del attempts[key]
                    self._tracked -= 1
                counters.invalidations += 1
                events.append(Invalidated(source, state.door, stage))
        if judged:
            # knockd: a packet from a source with attempts in progress never starts new ones.
            return events

        for state in doors:
            steps = state.steps
            if steps is None or steps[0] != step:
                continue
            target = state.target
            if target is not None and target != destination:
                continue
            if is_tcp:
                required = state.flags_required
                if flags & required != required or flags & state.flags_forbidden:
                    counters.flags_ignored += 1
                    continue
            if self._tracked >= self.max_attempts:
                self._evict_oldest(events)
            # The first step done: the attempt starts at stage 1 (or the door opens) at once.
            counters.stages += 1
            events.append(Progress(source, state.door, 1))
            if len(steps) > 1:
                state.attempts[key] = (1, now, connection)
                self._tracked += 1
                deadline = now + state.timeout
                # Not min(): a comparison is a third of the cost of the call.
                if deadline < self._expire_at:  # noqa: PLR1730
                    self._expire_at = deadline
            else:
                self._open(state, source, now, events)
        return events

    def _open(self, state: _DoorState, source: IPAddress, now: float, events: list[Event]) -> None:
        """`source` has done the last step of `state`'s door (its attempt is gone): open."""
        self.counters.opens += 1
        events.append(Opened(source, state.door, now))
        if state.door.one_time_sequences is not None:
            self._next_one_time(state, events)

    def _next_one_time(self, state: _DoorState, events: list[Event]) -> None:
        used = state.door.one_time[state.one_time_index]
        events.append(OneTimeUsed(state.door, used.line))
        state.one_time_index += 1
        state.steps = _steps_of(state.door, state.one_time_index)
        # Others' attempts were for the used sequence; it is no longer a way in.
        self._tracked -= len(state.attempts)
        state.attempts.clear()
        if state.steps is None:
            events.append(DoorDisabled(state.door, "its one-time sequences are used up"))

    def _evict_oldest(self, events: list[Event]) -> None:
        oldest: _DoorState | None = None
        oldest_started = 0.0
        for state in self._doors:
            if state.attempts:
                started = next(iter(state.attempts.values()))[1]
                if oldest is None or started < oldest_started:
                    oldest, oldest_started = state, started
        if oldest is None:
            return
        key, (stage, _, _) = oldest.attempts.popitem(last=False)
        self._tracked -= 1
        if stage != _BROKEN:
            self.counters.evictions += 1
            events.append(Evicted(_address(key), oldest.door, stage))
