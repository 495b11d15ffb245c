"""The replay cache: digests of accepted SPA packets, each kept while its packet could still pass
the timestamp window, so that the same packet, sent again from anywhere, is refused.

Bounded: at most `capacity` digests. A digest is dropped once its packet's timestamp has left the
window (`until`), never earlier, so the bound holds without forgetting a live packet: when the
cache is full of live digests, `add` refuses, and the verifier refuses the request (fail closed).
fwknopd's own cache grows without bound and is only ever pruned by hand.
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

    def __len__(self) -> int:
        return len(self._until)

    def seen(self, digest: bytes, now: float) -> bool:
        """Whether `digest` was accepted and `now` is not past its `until`."""
        self._expire(now)
        return digest in self._until

    def add(self, digest: bytes, until: float) -> bool:
        """Remember `digest` until `until`; False, and nothing kept, when the cache is full of
        digests that are all still live."""
        if until < self._now:
            return True  # its packet is already out of the window: nothing to remember
        if digest in self._until:
            if until > self._until[digest]:
                self._until[digest] = until
                heapq.heappush(self._expiry, (until, digest))
            return True
        if len(self._until) >= self.capacity:
            return False
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
        self._now = max(self._now, now)
        expiry, until = self._expiry, self._until
        # Kept through `until` itself: the window check lets a packet pass at its very edge.
        while expiry and expiry[0][0] < self._now:
            when, digest = heapq.heappop(expiry)
            if until.get(digest) == when:
                del until[digest]
