"""The replay cache: digests of accepted SPA packets, each kept while its packet could still pass
the timestamp window, so that the same packet, sent again from anywhere, is refused.

Bounded: at most `capacity` digests. A digest is dropped once its packet's timestamp has left the
window (`until`), never earlier, so the bound holds without forgetting a live packet: when the
cache is full of live digests, `add` refuses, and the verifier refuses the request (fail closed).
fwknopd's own cache grows without bound and is only ever pruned by hand.

Shared fairly: the cache is split among the keys that may be accepted (`owners`, set by the
verifier: an fwknop stanza is one key, a client of a signed door another), each holding at most
`capacity // owners` live digests of its own. A key holder who floods valid packets fills only
its own share and is then refused (still fail closed: no live digest is dropped to make room),
while every other key still gets in. Digests read back at start (`load`) have no owner: they
count against the whole `capacity`, and are gone within two windows.

Time is the wall clock the caller passes, and it may step back (NTP): a digest whose `until` is
not yet reached by the latest `now` is kept, whatever time was seen before, or a packet accepted
after the step would not be remembered for its whole window.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable


def replay_digest(payload: bytes) -> bytes:
    """The replay key of a packet: SHA-256 of its raw payload, the bytes as they arrived (what
    fwknopd keeps too), so any change to a packet is a new digest, and also a failed HMAC."""
    return hashlib.sha256(payload).digest()


class ReplayCache:
    """Digests of accepted packets, each with the time (`until`) its packet leaves the window.

    Time is passed in: `seen` drops what has run out by `now`, which is also the time `add`
    counts with, since the verifier always asks `seen` first."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a replay cache holds at least one digest")
        self.capacity = capacity
        self._until: dict[bytes, float] = {}
        # (until, digest) in expiry order; an entry whose digest has since been re-added with a
        # later `until` is stale, and skipped when it comes up.
        self._expiry: list[tuple[float, bytes]] = []
        self._now = float("-inf")
        # Each owned digest's owner, and how many live digests each owner holds.
        self._owner: dict[bytes, str] = {}
        self._held: dict[str, int] = {}
        self.owners = 1

    def __len__(self) -> int:
        return len(self._until)

    def seen(self, digest: bytes, now: float) -> bool:
        """Whether `digest` was accepted and `now` is not past its `until`."""
        self._expire(now)
        return digest in self._until

    @property
    def share(self) -> int:
        """How many live digests one owner may hold."""
        return max(1, self.capacity // max(1, self.owners))

    def add(self, digest: bytes, until: float, owner: str | None = None) -> bool:
        """Remember `digest` until `until`; False, and nothing kept, when `owner`'s share (the
        whole cache without an owner) is full of digests that are all still live."""
        if until < self._now:
            return True  # its packet is already out of the window: nothing to remember
        if digest in self._until:
            if until > self._until[digest]:
                self._until[digest] = until
                heapq.heappush(self._expiry, (until, digest))
            return True
        if owner is None:
            if len(self._until) >= self.capacity:
                return False
        elif self._held.get(owner, 0) >= self.share:
            return False
        else:
            self._owner[digest] = owner
            self._held[owner] = self._held.get(owner, 0) + 1
        self._until[digest] = until
        heapq.heappush(self._expiry, (until, digest))
        return True

    def entries(self, now: float) -> list[tuple[bytes, float]]:
        """The live digests (`until` not before `now`) and their `until`, soonest to leave
        first: what persistence saves."""
        self._expire(now)
        return sorted(((d, u) for d, u in self._until.items()), key=lambda e: e[1])

    @classmethod
    def load(cls, entries: Iterable[tuple[bytes, float]], capacity: int, now: float) -> ReplayCache:
        """A cache holding the saved `entries` still live at `now`. If there are more than
        `capacity` (a smaller cache configured since), those that stay live longest are kept."""
        cache = cls(capacity)
        live = sorted((e for e in entries if e[1] >= now), key=lambda e: e[1], reverse=True)
        cache._expire(now)
        for digest, until in live[:capacity]:
            cache.add(digest, until)
        return cache

    def _expire(self, now: float) -> None:
        # `now` as given, also when it is earlier than before: see the module's text.
        self._now = now
        expiry, until = self._expiry, self._until
        # Kept through `until` itself: the window check lets a packet pass at its very edge.
        while expiry and expiry[0][0] < now:
            when, digest = heapq.heappop(expiry)
            if until.get(digest) == when:
                del until[digest]
                owner = self._owner.pop(digest, None)
                if owner is not None:
                    self._release(owner)

    def _release(self, owner: str) -> None:
        held = self._held[owner] - 1
        if held:
            self._held[owner] = held
        else:
            del self._held[owner]
