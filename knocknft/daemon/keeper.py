"""Keeping our table while the daemon runs: when another tool deletes it (`nft flush ruleset`, a
firewall reload that starts with one), put it back, with the grants and bans that were in it;
when another tool deletes its rules (`nft flush table`), put them back.

The kernel drops a deleted table's set elements with it, so grants and bans can only come back
from memory. `GrantMemory` and `BanMemory` follow every element added to or removed from our
sets, by the daemon or by `knocknft open`/`close`, through the kernel's notifications
(knocknft.netlink.nftevents), and know when each ends; a grant that was revoked (a ban that was
lifted) is never put back, one that expired meanwhile neither, and the others get back exactly
the time they had left. A ban that did not come back would let a banned knocker in again.

A flush of the table's rules keeps its sets' elements, but no rule drops anything any more:
every protected service is open to all. Its notice is the deletion of rules in our table, which
our own reapply also announces, so the keeper looks first: a chain the config gives rules that
the kernel has none in (or has not at all) is what a flush leaves. (A chain that merely holds
other rules is left alone: that is `knocknft apply` of another config, not a flush.)

Notice comes two ways: the notification that the table (or its rules) was deleted, at once; and
a look at the kernel's list of tables and the rule counts of our chains every few seconds
(`check`; neither lists a set element), for when notifications were lost.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from knocknft.config import (
    MAX_BAN_SECONDS,
    MAX_GRANT_SECONDS,
    Config,
    DenyScope,
    IPAddress,
    PortSpec,
)
from knocknft.core.bans import Ban, ban_transaction
from knocknft.core.grants import Grant, grant_transaction
from knocknft.core.ruleset import ruleset_transaction
from knocknft.core.transaction import Rule
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
from knocknft.nft.queries import read_bans, read_grants, rule_counts, table_listed

log = logging.getLogger("knocknft")

K = TypeVar("K")


@dataclass(frozen=True)
class Remembered:
    door: str
    ends: float  # on the keeper's clock


class ElementMemory(Generic[K]):
    """The elements of some of our sets, as last announced: key -> door and end."""

    def __init__(self) -> None:
        self._elements: dict[K, Remembered] = {}

    def __len__(self) -> int:
        return len(self._elements)

    def _seed(self, elements: Iterable[tuple[K, str, float]], now: float) -> None:
        self._elements = {key: Remembered(door, now + left) for key, door, left in elements}

    def _note(self, key: K, door: str | None, expires_in: float | None, now: float) -> None:
        """An element added (with its door) or, with `door` None, deleted."""
        if door is None:
            self._elements.pop(key, None)
        elif expires_in is not None:
            self._elements[key] = Remembered(door, now + expires_in)

    def forget_ended(self, now: float) -> None:
        # The kernel does not announce expiry: without this, every knocker ever seen stays.
        self._elements = {k: r for k, r in self._elements.items() if r.ends > now}

    def _live(self, now: float, maximum: int) -> list[tuple[K, str, int]]:
        """The elements not yet ended, each for the whole seconds it has left (at least 1)."""
        self.forget_ended(now)
        return [
            (key, r.door, min(maximum, max(1, math.ceil(r.ends - now))))
            for key, r in self._elements.items()
        ]


class GrantMemory(ElementMemory[tuple[IPAddress, PortSpec]]):
    """The grants in our allow sets: (address, service) -> door and end."""

    def seed(self, grants: Iterable[Grant], now: float) -> None:
        """Start over from a listing of the sets (`expires` as the kernel reported it)."""
        self._seed(
            (
                ((g.address, g.service), g.door, g.expires if g.expires is not None else g.timeout)
                for g in grants
            ),
            now,
        )

    def note(self, event: ElementAdded | ElementDeleted, now: float) -> None:
        door = event.door if isinstance(event, ElementAdded) else None
        expires_in = event.expires_in if isinstance(event, ElementAdded) else None
        self._note((event.address, event.service), door, expires_in, now)

    def live(self, now: float) -> list[Grant]:
        return [
            Grant(address, service, door, left)
            for (address, service), door, left in self._live(now, MAX_GRANT_SECONDS)
        ]


class BanMemory(ElementMemory[tuple[DenyScope, IPAddress]]):
    """The bans in our deny sets: (scope, address) -> banning door and end."""

    def seed(self, bans: Iterable[Ban], now: float) -> None:
        self._seed(
            (
                ((b.scope, b.address), b.door, b.expires if b.expires is not None else b.timeout)
                for b in bans
            ),
            now,
        )

    def note(self, event: BanAdded | BanDeleted, now: float) -> None:
        door = event.door if isinstance(event, BanAdded) else None
        expires_in = event.expires_in if isinstance(event, BanAdded) else None
        self._note((event.scope, event.address), door, expires_in, now)

    def live(self, now: float) -> list[Ban]:
        return [
            Ban(address, door, left, scope)
            for (scope, address), door, left in self._live(now, MAX_BAN_SECONDS)
        ]


class TableKeeper:
    """Puts our table back when it vanishes, with the grants and bans it remembers, and its
    rules when they vanish."""

    def __init__(self, nft: Nft, clock: Callable[[], float]) -> None:
        self.nft = nft
        self.clock = clock
        self.memory = GrantMemory()
        self.bans = BanMemory()
        self.restores = 0

    def seed(self, grants: Iterable[Grant], table: str) -> None:
        """Start over from the grants as listed and the bans in `table`'s deny sets."""
        now = self.clock()
        self.memory.seed(grants, now)
        try:
            self.bans.seed(read_bans(self.nft, table), now)
        except KnocknftError as exc:
            log.error("table inet %s: cannot read its bans: %s", table, exc)

    def on_events(self, config: Config, events: Sequence[TableEvent]) -> None:
        now = self.clock()
        gone = lost = rules = False
        for event in events:
            if isinstance(event, TableDeleted):
                gone = True
            elif isinstance(event, EventsLost):
                lost = True
            elif isinstance(event, RulesDeleted):
                rules = True
            elif isinstance(event, (BanAdded, BanDeleted)):
                self.bans.note(event, now)
            else:
                self.memory.note(event, now)
        if gone or lost or rules:
            self.check(config, reread=lost)

    def check(self, config: Config, reread: bool = False) -> None:
        """Restore the table if it is missing, its rules if a chain lost them; with `reread`,
        relearn the grants and bans if it is there."""
        table = config.options.table
        now = self.clock()
        self.memory.forget_ended(now)
        self.bans.forget_ended(now)
        try:
            if not table_listed(self.nft, table):
                self._restore(config)
                return
            if reread:
                self.seed(read_grants(self.nft, table), table)
            if _emptied(config, rule_counts(self.nft, table)):
                self._restore_rules(config)
        except KnocknftError as exc:
            log.error(
                "table inet %s: cannot check or restore it: %s; trying again soon", table, exc
            )

    def _restore(self, config: Config) -> None:
        table = config.options.table
        now = self.clock()
        grants = self.memory.live(now)
        bans = self.bans.live(now)
        # Table, grants and bans in one transaction: with close_sessions, a granted client's
        # packet that fell between the two would have its connection reset, and a banned
        # knocker's would pass.
        tx = ruleset_transaction(config).extend(grant_transaction(table, grants))
        self.nft.apply(tx.extend(ban_transaction(table, bans)))
        self.restores += 1
        log.warning(
            "table inet %s vanished (nft flush ruleset?); restored, %d grant(s) and %d ban(s)"
            " put back",
            table,
            len(grants),
            len(bans),
        )

    def _restore_rules(self, config: Config) -> None:
        # The sets keep their elements through a flush of the rules, and the ruleset only ever
        # adds sets: grants and bans stay as they are.
        self.nft.apply(ruleset_transaction(config))
        self.restores += 1
        log.warning(
            "table inet %s lost its rules (nft flush table?); restored", config.options.table
        )


def _emptied(config: Config, counts: Mapping[str, int]) -> bool:
    """Whether a chain `config` gives rules has none in the kernel (`counts`: chain -> rules)."""
    rendered = {
        op.obj.chain.name
        for op in ruleset_transaction(config).ops
        if op.verb == "add" and isinstance(op.obj, Rule)
    }
    return any(counts.get(chain, 0) == 0 for chain in rendered)
