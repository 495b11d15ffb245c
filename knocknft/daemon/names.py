"""Reverse DNS names for log lines (`knocknft run -l`, knockd's --lookup), off the packet loop.

knockd calls gethostbyaddr() inside its packet loop, so one slow resolver stalls every knock
behind it. Here a single worker thread resolves, and the loop only ever reads a bounded cache:
a log line shows `addr (name)`, knockd's shape, only when the name is already known; otherwise it
shows the bare address and queues a lookup for later lines. A full queue drops the request rather
than wait, so a flood of spoofed sources costs bounded memory and never blocks a knock.

Names are only decoration for humans: commands always get the packet's address (`%IP%`), never a
name, because whoever controls the reverse zone chooses the name.
"""

from __future__ import annotations

import contextlib
import queue
import re
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from knocknft.config import IPAddress

DEFAULT_CACHE_SIZE = 4096
DEFAULT_QUEUE_SIZE = 256
# Names change rarely; a failed lookup is retried sooner, since a resolver may have been down.
NAME_TTL = 3600.0
FAILURE_TTL = 300.0

# A PTR record is attacker-chosen text: keep only what a host name can be, so a name can never
# forge a log line (newlines, escapes) or look like part of one.
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})$")

Resolver = Callable[[str], str]


def reverse_lookup(address: str) -> str:
    """The system resolver's name for `address` (blocking; run on the worker thread only)."""
    return socket.gethostbyaddr(address)[0]


class NameCache:
    """Bounded LRU of address -> name (or known failure), filled by one background thread."""

    def __init__(
        self,
        resolve: Resolver = reverse_lookup,
        *,
        size: int = DEFAULT_CACHE_SIZE,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        clock: Callable[[], float] = time.monotonic,
        start: bool = True,
    ) -> None:
        self._resolve = resolve
        self._size = size
        self._clock = clock
        self._lock = threading.Lock()
        # address -> (name or None for a failed lookup, expiry)
        self._names: OrderedDict[IPAddress, tuple[str | None, float]] = OrderedDict()
        self._pending: set[IPAddress] = set()
        self._queue: queue.Queue[IPAddress | None] = queue.Queue(maxsize=queue_size)
        self.dropped = 0
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._work, name="lookup", daemon=True)
            self._thread.start()

    def label(self, address: IPAddress) -> str:
        """`addr (name)` if the name is cached, else `addr`; never waits for the resolver."""
        name = self.cached(address)
        return f"{address} ({name})" if name else str(address)

    def cached(self, address: IPAddress) -> str | None:
        """The cached name, or None; a missing or stale entry is queued for lookup."""
        now = self._clock()
        with self._lock:
            entry = self._names.get(address)
            if entry is not None and entry[1] > now:
                self._names.move_to_end(address)
                return entry[0]
            if address in self._pending:
                return None
            try:
                self._queue.put_nowait(address)
            except queue.Full:
                self.dropped += 1
                return None
            self._pending.add(address)
        return None

    def resolve_one(self) -> bool:
        """Resolve the next queued address (the worker's step; tests call it directly).

        False once the cache is closed.
        """
        address = self._queue.get()
        if address is None:
            return False
        try:
            name: str | None = self._resolve(str(address))
        except (OSError, UnicodeError):
            name = None
        if name is not None and not _HOSTNAME_RE.match(name):
            name = None
        ttl = NAME_TTL if name else FAILURE_TTL
        with self._lock:
            self._pending.discard(address)
            self._names[address] = (name, self._clock() + ttl)
            self._names.move_to_end(address)
            while len(self._names) > self._size:
                self._names.popitem(last=False)
        return True

    def _work(self) -> None:
        while self.resolve_one():
            pass

    def close(self) -> None:
        """Stop the worker. A lookup in progress is not waited for: it may hang for seconds."""
        if self._thread is None:
            return
        # On a full queue the thread is left to end with the process: it is a daemon thread.
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._names)


class Labelled:
    """An address that renders as `addr (name)` when logged: the lookup and the formatting happen
    only if the log line is actually written (rate-limited lines cost nothing)."""

    __slots__ = ("address", "names")

    def __init__(self, address: IPAddress, names: NameCache) -> None:
        self.address = address
        self.names = names

    def __str__(self) -> str:
        return self.names.label(self.address)
