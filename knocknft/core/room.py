"""Room in the allowlist sets under a flood of grants: who gets in, and what gives way.

Pure. Anyone who knows a sequence can complete it from forged sources, each completion a grant,
and a set holds at most ALLOW_SET_SIZE elements: without a rule, the flood fills it and every
later knocker is refused until grants expire. `GrantRoom` keeps the daemon's own grants per set
(allow4, allow6), by prefix (IPv4 /24, IPv6 /64: what one site holds), and plans each batch:

1. A refresh (the element is there) always goes in: it takes no room.
2. While a set holds fewer than `crowded` (half its size) grants, every new grant goes in.
3. From then on, a prefix holds at most `share` grants: a new one beyond it is held back. A
   flood from one /24 or /64 stops there, and half the set stays for everyone else.
4. When the set is full, the oldest grant of the busiest prefix gives way to the new grant,
   removed in the same kernel transaction. A flood spread over many prefixes (IPv6 makes that
   cheap) then costs its own oldest grants first: a knocker still gets in, and keeps the grant
   until the flood has put a whole set's worth of newer grants in after it; the connection it
   opened meanwhile lives on (`ct state established`).

Grants made by others (`knocknft open`) are unknown here until the kernel refuses one for a full
set; `make_room` then evicts from what the daemon knows.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from knocknft.config import IPAddress, PortSpec
from knocknft.core.grants import Grant

Key = tuple[IPAddress, PortSpec]
Prefix = tuple[int, int]  # (IP version, the address with its host bits cleared)

# A prefix's share of a crowded set: far more than one site's real knockers at once.
PREFIX_SHARE = 64
# How often at most the room forgets expired grants (a pass over all of them), in seconds.
SWEEP_INTERVAL = 1.0
_HOST_BITS = {4: 32 - 24, 6: 128 - 64}


def prefix_of(address: IPAddress) -> Prefix:
    """The /24 (IPv4) or /64 (IPv6) an address is in."""
    bits = _HOST_BITS[address.version]
    return address.version, int(address) >> bits << bits


def show_prefix(prefix: Prefix) -> str:
    version, base = prefix
    return f"{ipaddress.ip_address(base) if version == 6 else ipaddress.IPv4Address(base)}/" + (
        "24" if version == 4 else "64"
    )


@dataclass
class Plan:
    """What a batch of grants becomes: the grants to send, the ones held back (their prefix is
    over its share of a crowded set), the elements that give way to them, and the grants of
    this very batch that gave way before they were sent (a flood's batch can be that large)."""

    admitted: list[Grant] = field(default_factory=list)
    held: list[Grant] = field(default_factory=list)
    evictions: list[Key] = field(default_factory=list)
    displaced: list[Grant] = field(default_factory=list)


class _SetRoom:
    """One set: each grant's end, in order of age, and the prefixes by how many they hold."""

    def __init__(self) -> None:
        self.ends: dict[Key, float] = {}  # oldest first: a refresh moves a grant to the end
        self.members: dict[Prefix, dict[Key, None]] = {}
        # Prefixes by the number of grants they hold, each bucket in order of arrival.
        self.by_count: dict[int, dict[Prefix, None]] = {}
        self.top = 0
        self.swept = float("-inf")

    def __len__(self) -> int:
        return len(self.ends)

    def count(self, prefix: Prefix) -> int:
        return len(self.members.get(prefix, ()))

    def _move(self, prefix: Prefix, before: int, after: int) -> None:
        if before:
            del self.by_count[before][prefix]
        if after:
            self.by_count.setdefault(after, {})[prefix] = None
            self.top = max(self.top, after)

    def add(self, key: Key, ends: float) -> None:
        prefix = prefix_of(key[0])
        members = self.members.setdefault(prefix, {})
        if key in self.ends:
            del self.ends[key], members[key]  # a refresh: the youngest again
        else:
            self._move(prefix, len(members), len(members) + 1)
        self.ends[key] = ends
        members[key] = None

    def remove(self, key: Key) -> None:
        if self.ends.pop(key, None) is None:
            return
        prefix = prefix_of(key[0])
        members = self.members[prefix]
        del members[key]
        self._move(prefix, len(members) + 1, len(members))
        if not members:
            del self.members[prefix]

    def victim(self) -> Key | None:
        """The oldest grant of the busiest prefix, or None when empty."""
        while self.top and not self.by_count.get(self.top):
            self.top -= 1
        if not self.top:
            return None
        prefix = next(iter(self.by_count[self.top]))
        return next(iter(self.members[prefix]))

    def sweep(self, now: float) -> None:
        if now - self.swept < SWEEP_INTERVAL:
            return
        self.swept = now
        for key in [k for k, ends in self.ends.items() if ends <= now]:
            self.remove(key)


class GrantRoom:
    """The daemon's grants in each allowlist set, and the plan that keeps room for knockers."""

    def __init__(self, size: int, share: int = PREFIX_SHARE) -> None:
        self.size = size
        self.crowded = size // 2
        self.share = share
        self._sets = {4: _SetRoom(), 6: _SetRoom()}

    def __len__(self) -> int:
        return sum(map(len, self._sets.values()))

    def held_by(self, address: IPAddress) -> int:
        """How many grants the prefix of `address` holds (for log lines and tests)."""
        return self._sets[address.version].count(prefix_of(address))

    def seed(self, grants: Iterable[Grant], now: float) -> None:
        """Start from the kernel's listing (the grants kept over a restart or a reload)."""
        self._sets = {4: _SetRoom(), 6: _SetRoom()}
        for g in grants:
            left = g.expires if g.expires is not None else g.timeout
            self._sets[g.address.version].add((g.address, g.service), now + left)

    def plan(self, grants: Iterable[Grant], now: float) -> Plan:
        """Admit, hold back or make room for each grant (see the module's text); the room
        counts the admitted ones as granted (`forget` takes back what the kernel refused)."""
        plan = Plan()
        sending: dict[Key, Grant] = {}
        for g in grants:
            room = self._sets[g.address.version]
            key = (g.address, g.service)
            if key not in room.ends and len(room) >= self.crowded:
                room.sweep(now)
                if len(room) >= self.crowded and room.count(prefix_of(g.address)) >= self.share:
                    plan.held.append(g)
                    continue
                if len(room) >= self.size:
                    victim = room.victim()
                    if victim is not None:
                        room.remove(victim)
                        # Not in the kernel yet: it is simply not sent.
                        mine = sending.pop(victim, None)
                        if mine is None:
                            plan.evictions.append(victim)
                        else:
                            plan.displaced.append(mine)
            room.add(key, now + g.timeout)
            sending[key] = g
        plan.admitted = list(sending.values())
        return plan

    def make_room(self, grant: Grant) -> Key | None:
        """The kernel says the set is full (grants the room did not know fill it): the element to
        evict for `grant`, if the room holds any other."""
        room = self._sets[grant.address.version]
        victim = room.victim()
        if victim is None or victim == (grant.address, grant.service):
            return None
        room.remove(victim)
        return victim

    def forget(self, grants: Iterable[Grant]) -> None:
        """Grants the kernel refused after all: not in the set."""
        for g in grants:
            self._sets[g.address.version].remove((g.address, g.service))
