"""Each grant's end, said once: in the log and in the event log, with the reason.

The kernel ends most grants by itself (the element's timeout) and announces nothing then; what
it does announce is every element added to or removed from our sets (knocknft.netlink.nftevents),
with its expiry. So `GrantEnds` follows those announcements, as the table keeper does, and:

- at a grant's announced end, reports it `expired`, on the daemon's timer;
- when an element leaves a set and the daemon did not remove it (`knocknft close`, an
  `nft delete element`), reports it `revoked`; after a short wait, since a refresh is a delete
  and an add in one kernel transaction whose announcements may reach us in two reads;
- when the daemon removes grants itself, it says so at once: a closing door's here (`close`),
  a grant that gave way in a full set by the granter, which tells us (`taken`); their
  announcements then say nothing more.

A ban takes no grant away (its deny set shadows it while it lasts), and a reload keeps every
grant: neither is an end. With `-D`, every announcement is logged too.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from knocknft.config import IPAddress, PortSpec
from knocknft.core.decide import Revocation
from knocknft.core.grants import Grant, revoke_transaction
from knocknft.errors import KnocknftError
from knocknft.netlink.nftevents import (
    BanAdded,
    BanDeleted,
    ElementAdded,
    ElementDeleted,
    EventsLost,
    RulesDeleted,
    TableDeleted,
    TableEvent,
)
from knocknft.nft.libnft import Nft

log = logging.getLogger("knocknft")

Key = tuple[IPAddress, PortSpec]

# How long a removed element waits for the add that would make it a refresh.
SETTLE_SECONDS = 0.25
# Stale schedule entries tolerated beyond twice the grants known, before a rebuild.
COMPACT_SLACK = 1024
# Removals by the daemon whose announcement is awaited: a full set's worth of evictions.
TAKEN_KEPT = 65536


@dataclass(frozen=True)
class Known:
    door: str
    ends: float | None  # on the daemon's clock; None when the kernel did not say


class GrantEnds:
    """The grants in our sets as announced, and the report of each one's end."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        allow: Callable[[], bool],
        audit: Callable[..., None],
        who: Callable[[IPAddress], object],
        relist: Callable[[], Iterable[Grant]] = list,
    ) -> None:
        self.clock = clock
        # The grants as the table keeper knows them after it re-read the sets: what we start
        # over from when announcements were lost.
        self._relist = relist
        self._allow = allow
        self._audit = audit
        self._who = who
        self._known: dict[Key, Known] = {}
        # (ends, n, key), stale entries skipped. `n` numbers the entries: two grants ending at
        # the same time are never compared by key (an IPv4 and an IPv6 address do not compare).
        self._schedule: list[tuple[float, int, Key]] = []
        self._numbering = itertools.count()
        self._removed: dict[Key, tuple[Known, float]] = {}  # reported at the float, unless re-added
        # Removed and reported by the daemon; their removal's announcement, which may come
        # after a late announcement of their addition, says nothing. Oldest dropped first.
        self._taken: dict[Key, None] = {}

    def seed(self, grants: Iterable[Grant]) -> None:
        """Start over from a listing of the sets, as an apply leaves them: no end reported."""
        now = self.clock()
        self._known.clear()
        self._schedule.clear()
        self._removed.clear()
        self._taken.clear()
        for g in grants:
            left = g.expires if g.expires is not None else g.timeout
            self._remember((g.address, g.service), g.door, left, now)

    def _remember(self, key: Key, door: str, expires_in: float | None, now: float) -> None:
        ends = None if expires_in is None else now + expires_in
        self._known[key] = Known(door, ends)
        if ends is not None:
            heapq.heappush(self._schedule, (ends, next(self._numbering), key))
            if len(self._schedule) > 2 * len(self._known) + COMPACT_SLACK:
                # Each refresh leaves its old entry behind until its time: a flood of refreshes
                # of long grants must not pile them up.
                self._schedule = [
                    (k.ends, next(self._numbering), key)
                    for key, k in self._known.items()
                    if k.ends is not None
                ]
                heapq.heapify(self._schedule)

    def on_events(self, events: Sequence[TableEvent]) -> None:
        now = self.clock()
        debug = log.isEnabledFor(logging.DEBUG)
        for event in events:
            if debug:
                log.debug("nf_tables: %s", describe(event))
            if isinstance(event, ElementAdded):
                self._removed.pop((event.address, event.service), None)
                self._remember((event.address, event.service), event.door, event.expires_in, now)
            elif isinstance(event, ElementDeleted):
                key = (event.address, event.service)
                known = self._known.pop(key, None)
                if key in self._taken:
                    del self._taken[key]
                elif known is not None:
                    self._removed[key] = (known, now + SETTLE_SECONDS)
            elif isinstance(event, EventsLost):
                # Some news is gone: start over from the sets as read again, saying nothing of
                # what may have ended meanwhile rather than something wrong.
                self.seed(self._relist())
                return

    def taken(self, keys: Iterable[Key]) -> dict[Key, str]:
        """The daemon removed these grants and reports their end itself: forget them. Returns
        the door of each one that was known."""
        doors: dict[Key, str] = {}
        for key in keys:
            known = self._known.pop(key, None) or self._removed.pop(key, (None, 0.0))[0]
            if known is not None:
                doors[key] = known.door
            self._taken[key] = None
            if len(self._taken) > TAKEN_KEPT:
                del self._taken[next(iter(self._taken))]
        return doors

    def close(self, nft: Nft, table: str, revocations: Sequence[Revocation]) -> None:
        """A closing door: remove the knocker's grants, as knockd's closeSSH deleted the rule;
        each end said here, as the door's."""
        keys = [(r.address, r.service) for r in revocations]
        try:
            nft.apply(revoke_transaction(table, keys))
        except KnocknftError as exc:
            log.error("could not close %s: %s", ", ".join(f"{a} {s}" for a, s in keys), exc)
            return
        granted_by = self.taken(keys)
        for r in revocations:
            log.info("%s: %s: closed %s", self._who(r.address), r.door, r.service)
            self._audit(
                "grant_end",
                source=r.address,
                door=granted_by.get((r.address, r.service)),  # None: no grant was known
                service=r.service,
                reason="closed",
                by=r.door,
            )

    def next_due(self) -> float | None:
        times = [due for _, due in self._removed.values()]
        if self._schedule:
            times.append(self._schedule[0][0])
        return min(times, default=None)

    def due(self, now: float) -> None:
        """Report the removals that were not refreshes, and the grants whose time is up."""
        for key, (known, due) in list(self._removed.items()):
            if due <= now:
                del self._removed[key]
                self._report(
                    key, known.door, "revoked", ": taken out of the set (knocknft close, nft)"
                )
        while self._schedule and self._schedule[0][0] <= now:
            ends, _, key = heapq.heappop(self._schedule)
            current = self._known.get(key)
            if current is None or current.ends != ends:
                continue  # refreshed, removed or ended since: a stale entry
            del self._known[key]
            self._report(key, current.door, "expired")

    def _report(self, key: Key, door: str, reason: str, why: str = "") -> None:
        address, service = key
        if self._allow():
            log.info("%s: %s: grant of %s %s%s", self._who(address), door, service, reason, why)
        self._audit("grant_end", source=address, door=door, service=service, reason=reason)


def describe(event: TableEvent) -> str:
    """An announcement as -D shows it."""
    if isinstance(event, (ElementAdded, BanAdded)):
        expiry = "" if event.expires_in is None else f", expires in {event.expires_in:g}s"
        what = (
            f"element added: {event.address} {event.service}"
            if isinstance(event, ElementAdded)
            else f"ban added: {event.address} from {event.scope}"
        )
        return f"{what} (door {event.door}{expiry})"
    if isinstance(event, ElementDeleted):
        return f"element deleted: {event.address} {event.service}"
    if isinstance(event, BanDeleted):
        return f"ban deleted: {event.address} from {event.scope}"
    return _PLAIN_NEWS[type(event)]


_PLAIN_NEWS: dict[type[TableEvent], str] = {
    TableDeleted: "our table was deleted",
    RulesDeleted: "rules of our table were deleted",
    EventsLost: "announcements lost (socket overflow): the sets are read again",
}
