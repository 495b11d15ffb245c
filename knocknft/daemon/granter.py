"""Grants carried out: room planned, kernel asked, each grant's outcome logged and audited.

`Granter` is the executor's hand for `GrantServices`. It plans each batch with
knocknft.core.room (a prefix over its share of a crowded set is held back; in a full set the
oldest grant of the busiest prefix gives way, removed in the same kernel transaction), hands it
to `Nft.grant`, which fails grants one by one, and when the kernel still finds the set full
(elements the daemon did not make fill it) makes room from the daemon's own grants and tries
those grants once more. Log lines go through the executor's rate limit for OPEN and grant
lines (`allow`); the audit log, the admin's record, gets one line per grant, refusal and
eviction, unlimited.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

from knocknft.config import IPAddress
from knocknft.core.grants import Grant, Refusal
from knocknft.core.room import GrantRoom, Key, prefix_of, show_prefix
from knocknft.core.ruleset import ALLOW_SET_SIZE
from knocknft.errors import KnocknftError, NftError, SetFull
from knocknft.nft.libnft import Nft

log = logging.getLogger("knocknft")


class Granter:
    """Adds grants for the executor, keeping room for knockers; counts what it did."""

    def __init__(
        self,
        nft: Nft,
        clock: Callable[[], float],
        *,
        allow: Callable[[], bool],
        audit: Callable[..., None],
        who: Callable[[IPAddress], object],
        taken: Callable[[Sequence[Key]], object] = lambda keys: None,
    ) -> None:
        self.nft = nft
        self.clock = clock
        # Told of the grants that gave way, whose end is reported here (grantends.GrantEnds).
        self._taken = taken
        self.room = GrantRoom(ALLOW_SET_SIZE)
        self._allow = allow
        self._audit = audit
        self._who = who
        self.granted = 0
        self.failed = 0
        self.evicted = 0

    def seed(self, grants: Iterable[Grant]) -> None:
        """The grants in the sets now (after an apply): what the room starts from."""
        self.room.seed(grants, self.clock())

    def grant(self, table: str, grants: Sequence[Grant]) -> set[Grant]:
        """Add `grants` as far as there is room; returns those that did not go in."""
        plan = self.room.plan(grants, self.clock())
        evicted = list(plan.evictions)
        try:
            refused = self.nft.grant(table, plan.admitted, plan.evictions)
            if any(isinstance(r.error, SetFull) for r in refused):
                refused = self._full_anyway(table, refused, evicted)
        except KnocknftError as exc:
            error = exc if isinstance(exc, NftError) else NftError(str(exc))
            refused = [Refusal(g, error) for g in plan.admitted]
            evicted = []
            if self._allow():
                log.error(
                    "could not grant %s: %s",
                    ", ".join(f"{g.address} {g.service}" for g in plan.admitted),
                    exc,
                )
        else:
            for r in refused:
                if self._allow():
                    log.error(
                        "%s: %s: could not grant %s: %s",
                        self._who(r.grant.address),
                        r.grant.door,
                        r.grant.service,
                        r.error,
                    )
        self.room.forget(r.grant for r in refused)
        self._evicted(table, [*evicted, *((g.address, g.service) for g in plan.displaced)])
        self._held(plan.held)
        for r in refused:
            g = r.grant
            self._audit(
                "grant_failed", source=g.address, door=g.door, service=g.service, error=str(r.error)
            )
        failed = {r.grant for r in refused} | set(plan.held) | set(plan.displaced)
        self.failed += len(failed)
        self.granted += len(grants) - len(failed)
        return failed

    def _full_anyway(self, table: str, refused: list[Refusal], evicted: list[Key]) -> list[Refusal]:
        """The kernel found the set full although the room did not: elements the daemon did not
        make fill it. Make room from the daemon's own grants and try those grants once more."""
        full = [r.grant for r in refused if isinstance(r.error, SetFull)]
        self.room.forget(full)  # not in the set: never a victim of their own retry
        retry: list[Grant] = []
        victims: list[Key] = []
        for g in full:
            victim = self.room.make_room(g)
            if victim is not None:
                retry.append(g)
                victims.append(victim)
        if not retry:
            return refused
        again = self.nft.grant(table, retry, victims)
        evicted += victims
        self.room.plan([g for g in retry if g not in {r.grant for r in again}], self.clock())
        return [r for r in refused if r.grant not in retry] + again

    def _evicted(self, table: str, keys: Sequence[Key]) -> None:
        self.evicted += len(keys)
        self._taken(keys)
        for address, service in keys:
            if self._allow():
                log.warning(
                    "%s: grant of %s gave way to a newer knocker: table inet %s's set is full "
                    "(%d elements), and its prefix %s holds the most grants",
                    self._who(address),
                    service,
                    table,
                    self.room.size,
                    show_prefix(prefix_of(address)),
                )
            self._audit("grant_evicted", source=address, service=service)

    def _held(self, grants: Sequence[Grant]) -> None:
        for g in grants:
            if self._allow():
                log.warning(
                    "%s: %s: %s not granted: its prefix %s holds %d grants of a set over half "
                    "full (at most %d each then)",
                    self._who(g.address),
                    g.door,
                    g.service,
                    show_prefix(prefix_of(g.address)),
                    self.room.held_by(g.address),
                    self.room.share,
                )
            self._audit("grant_held_back", source=g.address, door=g.door, service=g.service)
