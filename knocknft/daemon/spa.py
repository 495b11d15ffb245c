"""SPA in the daemon: packets from the SPA reader judged by the verifier, accepted requests granted
through the knock doors' own path, every outcome counted.

`SpaService` is what the loop drives (knocknft.daemon.loop.serve): it owns the SPA NFLOG reader
(knocknft.netlink.nflog.spa_socket), the verifier (knocknft.spa.verify.SpaVerifier) and its replay
cache, kept on disk (knocknft.daemon.spa_replay). For each packet: `check`; a rejection is counted
by its reason and shown at debug level (under the per-knock lines' rate limit); an accepted
request naming an address that is never granted (knocknft.core.sources) is refused as
not_allowed, with a warning, before it is counted as accepted; any other accepted request is
first written to the replay file (no grant for a packet a restart would forget: if
the file cannot be written, the request opens nothing), then becomes one `SpaOpened` event for
the executor (knocknft.core.decide): the same grants (timed set elements, room kept for
knockers), start and stop commands with %IP%, log line and audit event as a knock door's
opening, naming the door and the key, never a key's bytes.

The reader is bound when the config first has an SPA door: at start, or on the reload that adds
one. A reload hands the verifier the new config and keeps its replay cache.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from knocknft.config import Config, IPAddress
from knocknft.core.decide import Audit, Effect
from knocknft.core.events import Event, SpaOpened
from knocknft.core.sources import as_shown
from knocknft.daemon.executor import Daemon
from knocknft.daemon.spa_replay import load_replay, replay_path, save_replay
from knocknft.daemon.stats import NO_SPA_STATS, SpaStats
from knocknft.errors import KnocknftError
from knocknft.files import check_state_dir
from knocknft.netlink.nflog_decoder import NflogCounters
from knocknft.netlink.spa_nflog import SpaDatagram
from knocknft.spa.replay import ReplayCache
from knocknft.spa.request import Rejection, SpaRequest

log = logging.getLogger("knocknft")

# read_batch() calls per wake-up, as for knocks (knocknft.daemon.loop.DRAIN_BATCHES).
DRAIN_BATCHES = 8


class SpaReader(Protocol):
    """What the service needs of the SPA NFLOG socket (NflogReader[SpaDatagram] provides it)."""

    @property
    def counters(self) -> NflogCounters: ...

    def fileno(self) -> int: ...

    def read_batch(self) -> list[SpaDatagram]: ...

    def close(self) -> None: ...


class SpaCheck(Protocol):
    """What the service needs of the verifier (knocknft.spa.verify.SpaVerifier)."""

    def check(self, payload: bytes, source: IPAddress, now: float) -> SpaRequest | Rejection: ...

    def replace(self, config: Config) -> None: ...

    # Authentic requests refused (as not_allowed) because the replay cache was full.
    refused_cache_full: int


def _verifier(config: Config, replay: ReplayCache) -> SpaCheck:
    # Imported only once a config has SPA doors: the verifier brings in cryptography, a few MiB
    # of memory a daemon with knock doors alone has no use for.
    from knocknft.spa.verify import SpaVerifier

    return SpaVerifier(config, replay)


class SpaService:
    """The SPA reader, verifier and replay file of one daemon; see the module's text."""

    def __init__(
        self,
        daemon: Daemon,
        open_reader: Callable[[int], SpaReader],
        state_dir: Path | None = None,
        verifier: Callable[[Config, ReplayCache], SpaCheck] | None = None,
    ) -> None:
        self.daemon = daemon
        self._open_reader = open_reader
        self._verifier_for = verifier or _verifier
        # The replay file's directory: the one the daemon started with (a reload keeps it).
        self._state_dir = state_dir or daemon.config.options.state_dir
        self.reader: SpaReader | None = None
        self.verifier: SpaCheck | None = None
        self._replay: ReplayCache | None = None
        self._refuse_until: float | None = None
        self._window = 0  # spa_window as the daemon started with it (restart-only)
        self.accepted = 0
        self.rejected = dict.fromkeys(Rejection, 0)
        self.unsaved = 0
        self._cache_full_told = 0

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Bind the reader and load the replay file, if the config has SPA doors; raises
        (NflogError, UnsafeStateDir) when it cannot, before the table is applied."""
        if self.daemon.config.spa_doors:
            self._open(self.daemon.config)

    def reload(self, config: Config) -> None:
        """The reloaded config: the verifier's doors and keys (the cache is kept); the reader
        bound now if this is the first config with an SPA door. A reader that cannot be bound
        now is logged: the knock doors keep working, SPA waits for a restart."""
        if self.verifier is not None:
            self.verifier.replace(config)
        elif config.spa_doors:
            try:
                self._open(config)
            except KnocknftError as exc:
                log.error("SPA doors are not served until a restart: %s", exc)

    def _open(self, config: Config) -> None:
        options = config.options
        check_state_dir(self._state_dir)  # what it holds decides which packets are replays
        # Bound first: a group that cannot be bound leaves the replay file as it was (a damaged
        # one is set aside only when its refusal period is kept).
        reader = self._open_reader(options.spa_nflog_group)
        now = self.daemon.clock()
        loaded = load_replay(self._path, options.spa_window, now, options.spa_replay_cache)
        self._refuse_until = loaded.refuse_until
        self._window = options.spa_window
        # Room for every digest read back, should spa_replay_cache have shrunk since: dropping
        # one would let its packet be replayed.
        capacity = max(options.spa_replay_cache, len(loaded.entries))
        self._replay = ReplayCache.load(loaded.entries, capacity, now)
        self.verifier = self._verifier_for(config, self._replay)
        self.reader = reader
        # Not "listening on NFLOG group": that says the daemon is ready, which it is not before
        # its table is in.
        log.info(
            "SPA: udp port %d read from NFLOG group %d (%d door(s), %d packet(s) in the replay "
            "cache)",
            options.spa_port,
            options.spa_nflog_group,
            len(config.spa_doors),
            len(loaded.entries),
        )

    def fileno(self) -> int | None:
        """The reader's descriptor for the loop's select, None while no reader is bound."""
        return self.reader.fileno() if self.reader is not None else None

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()

    # -- the work -----------------------------------------------------------------------------

    def drain(self) -> None:
        """Read and judge what is queued, in batches, as the loop does for knocks."""
        if self.reader is None:
            return
        for _ in range(DRAIN_BATCHES):
            batch = self.reader.read_batch()
            if not batch:
                return
            self.handle(batch)

    def handle(self, datagrams: Iterable[SpaDatagram]) -> None:
        """Judge each packet; the accepted ones' digests written to the replay file once, then
        their openings carried out together, as a batch of knocks' are (one kernel call for all
        their grants)."""
        verifier = self.verifier
        if verifier is None:
            return
        clock = self.daemon.clock
        accepted: list[SpaOpened] = []
        only_ipv4 = self.daemon.only_ipv4
        for datagram in datagrams:
            if only_ipv4 and datagram.source.version == 6:
                # -4: IPv6 opens nothing, an SPA packet no more than a knock (before any work).
                self._reject(Rejection.NOT_ALLOWED, datagram.source, "IPv6 ignored (-4)")
                continue
            now = clock()
            result = verifier.check(datagram.payload, datagram.source, now)
            if isinstance(result, SpaRequest):
                event = self._opening(result, datagram.source, now)
                if event is not None:
                    accepted.append(event)
            else:
                self._reject(result, datagram.source)
        if accepted and self._saved(accepted, clock()):
            self.accepted += len(accepted)
            opened: list[Event] = list(accepted)
            self.daemon.execute(opened)

    def _opening(self, request: SpaRequest, sender: IPAddress, now: float) -> SpaOpened | None:
        """The opening an accepted request asks for; None (counted) if it may not have one."""
        door = self.daemon.config.door(request.door)
        if door is None:  # the verifier judges by the same config: only a bug gets here
            self._reject(Rejection.NOT_ALLOWED, sender)
            return None
        if self._refuse_until is not None and now < self._refuse_until:
            # The replay file was lost: this may be a packet accepted before it was.
            self._reject(Rejection.REPLAY, sender, f"{door.name}: replay file damaged at start")
            return None
        address = request.address
        # As a knock's source (knocknft.core.sources), but loopback only as the packet's own
        # source: an address named inside a packet has no kernel behind it.
        why = (
            self.daemon.refusal(address) if address == sender else self.daemon.source_check(address)
        )
        if why is None and address.version == 6 and self.daemon.only_ipv4:
            why = "an IPv6 address, and -4 ignores IPv6"
        if why is not None:
            if self.daemon.grant_log.allow():
                log.warning(
                    "%s: %s: SPA request of key %s refused: it names %s, %s, never granted",
                    as_shown(sender),
                    door.name,
                    request.key,
                    as_shown(address),
                    why,
                )
            self._reject(Rejection.NOT_ALLOWED, sender, f"{door.name}: {why}")
            return None
        # The door as asked for: its grants are these services, for this long.
        asked = dataclasses.replace(door, open=request.services, open_for=request.open_for)
        return SpaOpened(request.address, asked, now, request.key, request.mode, sender)

    def _saved(self, accepted: list[SpaOpened], now: float) -> bool:
        """The replay cache written whole, before any of these grants; if it cannot be, none
        of them is given (logged, audited, counted)."""
        assert self._replay is not None
        try:
            save_replay(self._path, self._replay.entries(now), self._window)
        except OSError as exc:
            self.unsaved += len(accepted)
            for event in accepted:
                if self.daemon.grant_log.allow():
                    log.error(
                        "%s: %s: SPA request refused: cannot write %s (%s); a restart would "
                        "forget the packet and let it be replayed",
                        as_shown(event.source),
                        event.door.name,
                        self._path,
                        exc.strerror or exc,
                    )
            audits: list[Effect] = [
                Audit("spa_unsaved", {"source": e.source, "door": e.door.name, "key": e.key})
                for e in accepted
            ]
            self.daemon.carry_out(audits)
            return False
        return True

    def _reject(self, reason: Rejection, sender: IPAddress, detail: str = "") -> None:
        self.rejected[reason] += 1
        if reason is Rejection.NOT_ALLOWED and self._cache_full() > self._cache_full_told:
            self._cache_full_told = self._cache_full()
            if self.daemon.grant_log.allow():
                log.warning(
                    "%s: SPA request refused: its key's share of the replay cache is full of "
                    "packets still inside their window (options.spa_replay_cache, shared among "
                    "the keys); its requests open again as they leave it",
                    as_shown(sender),
                )
        # Per packet, as knocks are: shown only under -D, and within the per-knock lines' limit.
        if log.isEnabledFor(logging.DEBUG) and self.daemon.knock_log.allow():
            log.debug(
                "%s: SPA packet refused: %s%s",
                as_shown(sender),
                reason,
                f" ({detail})" if detail else "",
            )

    def _cache_full(self) -> int:
        return self.verifier.refused_cache_full if self.verifier is not None else 0

    @property
    def _path(self) -> Path:
        return replay_path(self._state_dir)

    # -- reporting ----------------------------------------------------------------------------

    def stats(self) -> SpaStats:
        if self.reader is None:
            return NO_SPA_STATS
        counters = self.reader.counters
        rejected = self.rejected
        return {
            "spa_accepted": self.accepted,
            "spa_rejected_malformed": rejected[Rejection.MALFORMED],
            "spa_rejected_bad_auth": rejected[Rejection.BAD_AUTH],
            "spa_rejected_stale": rejected[Rejection.STALE],
            "spa_rejected_replay": rejected[Rejection.REPLAY],
            "spa_rejected_not_allowed": rejected[Rejection.NOT_ALLOWED],
            "spa_unsaved": self.unsaved,
            "spa_replay_cache_full": self._cache_full(),
            "spa_packets_dropped": sum(counters.non_knock.values())
            + sum(counters.malformed.values()),
            "spa_packets_lost": counters.lost,
        }
