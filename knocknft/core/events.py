"""What the knock engine reports: one event per thing that happened to an attempt or a door.

The engine (knocknft.core.engine) returns these in order; decide (knocknft.core.decide) turns
them into effects. SpaOpened is the one event the engine never makes: the daemon's SPA side
(knocknft.daemon.spa) makes it for an accepted request. Pure data, no behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass

from knocknft.config import Door, IPAddress


# Not frozen: a frozen dataclass sets each field through object.__setattr__, three times the
# cost of a plain one, and under a flood every packet makes one or two of these. Treat them as
# immutable all the same; unsafe_hash keeps them hashable like the frozen events.
@dataclass(slots=True, unsafe_hash=True)
class AttemptEvent:
    """Something that happened to one source's attempt on one door, at `stage` steps done."""

    source: IPAddress
    door: Door
    stage: int


@dataclass(slots=True, unsafe_hash=True)
class Progress(AttemptEvent):
    pass


@dataclass(frozen=True, slots=True)
class Opened:
    source: IPAddress
    door: Door
    at: float


@dataclass(frozen=True, slots=True)
class SpaOpened(Opened):
    """An SPA request accepted: an opening like a completed sequence's, its door cut to the
    services and time asked for, with who asked (`key`: a stanza's door, a client's name),
    the packet's `mode` and its `sender` (the packet's source; `source` is the address granted)."""

    key: str
    mode: str
    sender: IPAddress


@dataclass(slots=True, unsafe_hash=True)
class TimedOut(AttemptEvent):
    pass


@dataclass(slots=True, unsafe_hash=True)
class Invalidated(AttemptEvent):
    pass


@dataclass(slots=True, unsafe_hash=True)
class Evicted(AttemptEvent):
    pass


@dataclass(frozen=True, slots=True)
class OneTimeUsed:
    """The door's active one-time sequence was used: mark line `line` of its file."""

    door: Door
    line: int


@dataclass(frozen=True, slots=True)
class DoorDisabled:
    door: Door
    reason: str


Event = Progress | Opened | TimedOut | Invalidated | Evicted | OneTimeUsed | DoorDisabled
