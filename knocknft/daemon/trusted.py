"""always_allow's host names, resolved: once for `apply`, and by one thread while the daemon runs.

The daemon resolves at start, then every RESOLVE_INTERVAL and on each reload, on a worker thread:
the packet loop never waits for a resolver. When the addresses change, the thread wakes the loop
(`fileno`), which refills the named always-allow sets in one transaction
(knocknft.core.ruleset.always_allow_transaction). A name that stops resolving keeps its last
addresses, and that is logged: a resolver outage must not lock out the trusted hosts it names.

Addresses from a resolver go through the checks a configured network does
(knocknft.core.transaction.address): one that could not go into a ruleset is left out, logged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Iterable

from knocknft.config import Config, IPAddress
from knocknft.core.nftvalues import address
from knocknft.core.trusted import always_allow_transaction
from knocknft.errors import InvalidValue, KnocknftError
from knocknft.nft.libnft import Nft

log = logging.getLogger("knocknft")

# Trusted hosts move rarely; a renumbered one is let in again within this, or at once on SIGHUP.
RESOLVE_INTERVAL = 300.0

# name -> the address texts the system resolver gives (blocking).
Lookup = Callable[[str], Iterable[str]]
Resolved = tuple[tuple[str, IPAddress], ...]


def lookup_host(name: str) -> list[str]:
    """The system resolver's addresses for `name`: /etc/hosts, then DNS, as nsswitch says."""
    return [str(info[4][0]) for info in socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)]


class NameResolver:
    """Host names to addresses, keeping each name's last addresses when it stops resolving."""

    def __init__(self, lookup: Lookup = lookup_host, warn: Callable[[str], None] | None = None):
        self._lookup = lookup
        self._warn = warn or log.warning
        self._lock = threading.Lock()
        self._known: dict[str, tuple[IPAddress, ...]] = {}

    def resolve(self, names: Iterable[str]) -> Resolved:
        """Look every name up now (blocking) and return what they stand for."""
        wanted = tuple(names)
        with self._lock:  # a name no longer asked for is forgotten
            self._known = {n: a for n, a in self._known.items() if n in wanted}
        for name in wanted:
            found = self._addresses(name)
            with self._lock:
                last = self._known.get(name)
                if found:
                    self._known[name] = found
                elif last:
                    shown = ", ".join(map(str, last))
                    self._warn(f"always_allow: {name} no longer resolves; keeping {shown}")
                else:
                    self._warn(f"always_allow: {name} does not resolve: it is not let in yet")
        return self.known(wanted)

    def known(self, names: Iterable[str]) -> Resolved:
        """What `names` resolved to last, without asking the resolver: never blocks."""
        with self._lock:
            return tuple((n, a) for n in names for a in self._known.get(n, ()))

    def _addresses(self, name: str) -> tuple[IPAddress, ...]:
        try:
            texts = list(self._lookup(name))
        except (OSError, UnicodeError):
            return ()
        found: dict[IPAddress, None] = {}
        for text in texts:
            try:
                parsed = ipaddress.ip_address(text)
                address(parsed)  # the check a configured network passes
            except (ValueError, InvalidValue):
                self._warn(f"always_allow: {name} resolved to {text[:80]!r}: left out")
                continue
            found[parsed] = None
        return tuple(found)


def resolve_config(config: Config, resolver: NameResolver | None = None) -> Config:
    """`config` with its host names resolved now (blocking): for `apply` and the daemon's start."""
    names = config.options.always_allow_names
    if not names:
        return config
    resolved = (resolver or NameResolver()).resolve(names)
    return dataclasses.replace(config, always_allow_resolved=resolved)


def refill(config: Config, nft: Nft, resolved: Resolved) -> Config:
    """`config` with the names' new addresses, the named sets refilled to match in one
    transaction. A refusal is logged: the config keeps them all the same, so the table put back
    after a flush (knocknft.daemon.keeper) or the next change has them."""
    if resolved == config.always_allow_resolved:
        return config
    new = dataclasses.replace(config, always_allow_resolved=resolved)
    try:
        nft.apply(always_allow_transaction(new))
    except KnocknftError as exc:
        log.error("always_allow: cannot refill the sets with the names' addresses: %s", exc)
    else:
        shown = ", ".join(f"{name} {source}" for name, source in resolved) or "nothing"
        log.info("always_allow: host names now let in: %s", shown)
    return new


class ResolverThread:
    """The daemon's resolver: re-resolves the names every `interval` and when asked (`want`),
    off the loop; `fileno` becomes readable when the addresses changed, `take` hands them over."""

    def __init__(
        self, resolver: NameResolver, names: Iterable[str], interval: float = RESOLVE_INTERVAL
    ) -> None:
        self.resolver = resolver
        self._interval = interval
        self._lock = threading.Lock()
        self._names = tuple(names)
        self._published: Resolved = resolver.known(self._names)
        self._fresh: Resolved | None = None
        self._wake = threading.Event()
        self._closed = False
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)
        self._thread = threading.Thread(target=self._work, name="always_allow", daemon=True)
        self._thread.start()

    def fileno(self) -> int:
        return self._read.fileno()

    def want(self, names: Iterable[str]) -> None:
        """Resolve these names from now on (a reload's), starting at once."""
        wanted = tuple(names)
        with self._lock:
            self._names = wanted
            self._published = self.resolver.known(wanted)
        self._wake.set()

    def take(self) -> Resolved | None:
        """The addresses, if they changed since the last take (never blocks)."""
        with contextlib.suppress(BlockingIOError):
            while self._read.recv(64):
                pass
        with self._lock:
            fresh, self._fresh = self._fresh, None
        return fresh

    def step(self) -> None:
        """One round: resolve every name, publish if anything changed."""
        with self._lock:
            names = self._names
        resolved = self.resolver.resolve(names)
        with self._lock:
            if resolved == self._published:
                return
            self._published = self._fresh = resolved
        with contextlib.suppress(BlockingIOError, OSError):
            self._write.send(b"!")

    def _work(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._closed:
                return
            self.step()

    def close(self) -> None:
        """Stop the thread; a lookup in progress is not waited for (it may hang for seconds)."""
        self._closed = True
        self._wake.set()
        self._read.close()
        self._write.close()
