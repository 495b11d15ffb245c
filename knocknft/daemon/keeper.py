"""Keeping our table while the daemon runs: when another tool deletes it (`nft flush ruleset`, a
firewall reload that starts with one), put it back, with the grants that were in it.

The kernel drops a deleted table's set elements with it, so the grants can only come back from
memory. `GrantMemory` follows every element added to or removed from our sets, by the daemon
or by `knocknft open`/`close`, through the kernel's notifications (knocknft.netlink.nftevents), and
knows when each ends; a grant that was revoked is never put back, one that expired meanwhile
neither, and the others get back exactly the time they had left.

Notice comes two ways: the notification that the table was deleted, at once; and a look at the
kernel's list of tables every few seconds (`check`), for when notifications were lost.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from knocknft.config import MAX_GRANT_SECONDS, Config, IPAddress, PortSpec
from knocknft.core.grants import Grant, grant_transaction
from knocknft.core.ruleset import ruleset_transaction
from knocknft.errors import KnocknftError
from knocknft.netlink.nftevents import (
    ElementAdded,
    ElementDeleted,
    EventsLost,
    TableDeleted,
    TableEvent,
)
from knocknft.nft.libnft import Nft
from knocknft.nft.queries import read_grants, table_listed

log = logging.getLogger("knocknft")


@dataclass(frozen=True)
class Remembered:
    door: str
    ends: float  # on the keeper's clock


class GrantMemory:
    """The grants in our sets, as last announced: (address, service) -> door and end."""

    def __init__(self) -> None:
        self._grants: dict[tuple[IPAddress, PortSpec], Remembered] = {}

    def __len__(self) -> int:
        return len(self._grants)

    def seed(self, grants: Iterable[Grant], now: float) -> None:
        """Start over from a listing of the sets (`expires` as the kernel reported it)."""
        self._grants = {
            (g.address, g.service): Remembered(
                g.door, now + (g.expires if g.expires is not None else g.timeout)
            )
            for g in grants
        }

    def note(self, event: ElementAdded | ElementDeleted, now: float) -> None:
        key = (event.address, event.service)
        if isinstance(event, ElementDeleted):
            self._grants.pop(key, None)
        elif event.expires_in is not None:
            self._grants[key] = Remembered(event.door, now + event.expires_in)

    def forget_ended(self, now: float) -> None:
        # The kernel does not announce expiry: without this, every knocker ever seen stays.
        self._grants = {k: r for k, r in self._grants.items() if r.ends > now}

    def live(self, now: float) -> list[Grant]:
        """The grants not yet ended, each for the whole seconds it has left (at least 1)."""
        self.forget_ended(now)
        return [
            Grant(address, service, r.door, min(MAX_GRANT_SECONDS, max(1, math.ceil(r.ends - now))))
            for (address, service), r in self._grants.items()
        ]


class TableKeeper:
    """Puts our table back when it vanishes, with the grants GrantMemory remembers."""

    def __init__(self, nft: Nft, clock: Callable[[], float]) -> None:
        self.nft = nft
        self.clock = clock
        self.memory = GrantMemory()
        self.restores = 0

    def seed(self, grants: Iterable[Grant]) -> None:
        self.memory.seed(grants, self.clock())

    def on_events(self, config: Config, events: Sequence[TableEvent]) -> None:
        now = self.clock()
        gone = lost = False
        for event in events:
            if isinstance(event, TableDeleted):
                gone = True
            elif isinstance(event, EventsLost):
                lost = True
            else:
                self.memory.note(event, now)
        if gone or lost:
            self.check(config, reread=lost)

    def check(self, config: Config, reread: bool = False) -> None:
        """Restore the table if it is missing; with `reread`, relearn the grants if it is not."""
        table = config.options.table
        self.memory.forget_ended(self.clock())
        try:
            if not table_listed(self.nft, table):
                self._restore(config)
            elif reread:
                self.seed(read_grants(self.nft, table))
        except KnocknftError as exc:
            log.error(
                "table inet %s: cannot check or restore it: %s; trying again soon", table, exc
            )

    def _restore(self, config: Config) -> None:
        table = config.options.table
        grants = self.memory.live(self.clock())
        # Table and grants in one transaction: with close_sessions, a granted client's packet
        # that fell between the two would have its connection reset.
        self.nft.apply(ruleset_transaction(config).extend(grant_transaction(table, grants)))
        self.restores += 1
        log.warning(
            "table inet %s vanished (nft flush ruleset?); restored, %d grant(s) put back",
            table,
            len(grants),
        )
