"""The daemon's loop: the NFLOG sockets, the timer, the signals, reloads and periodic stats.

`serve` owns the sockets and drives the executor (`knocknft.daemon.executor.Daemon`): packets to
`handle_packets`, due timers to `tick`, nf_tables news of our table to `on_table_events`, and
SPA packets to SPA's service (`knocknft.daemon.spa.SpaService.drain`).
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import selectors
import signal
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from knocknft.config import Config, IPAddress
from knocknft.core.engine import Knock
from knocknft.daemon.executor import Daemon
from knocknft.daemon.stats import STATS_FILE, STATS_INTERVAL, DaemonStats, SourceStats
from knocknft.errors import KnocknftError
from knocknft.files import write_atomic
from knocknft.netlink.nftevents import TableEvent

log = logging.getLogger("knocknft")

# read_batch() calls per wake-up before timers and signals get their turn.
DRAIN_BATCHES = 8


def write_stats(path: Path, data: DaemonStats) -> None:
    """stats.json for `knocknft status --stats`; not being able to write it stops nothing."""
    try:
        # Counters, never a port or a sequence (tests/unit/test_stats.py holds it to that), so
        # readable by all; the daemon's start made the state dir, private, and checked it.
        write_atomic(path, json.dumps(data, indent=1), new_mode=0o644)
    except OSError as exc:
        log.debug("cannot write %s: %s", path, exc)


def stats_path(config: Config) -> Path:
    return config.options.state_dir / STATS_FILE


class Signals:
    """SIGHUP/SIGTERM/SIGINT as flags, with a wake-up pipe so select() returns at once."""

    def __init__(self) -> None:
        self.reload = False
        self.stop = False
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)
        signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGHUP, self._on_hup)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)

    def _on_hup(self, signum: int, frame: object) -> None:
        self.reload = True

    def _on_stop(self, signum: int, frame: object) -> None:
        self.stop = True

    def fileno(self) -> int:
        return self._read.fileno()

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._read.recv(4096):
                pass

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        self._read.close()
        self._write.close()


class _Selectable(Protocol):
    def fileno(self) -> int: ...


class PacketSource(Protocol):
    """What `serve` needs of the NFLOG socket (NflogSocket provides it)."""

    def fileno(self) -> int: ...

    def read_batch(self) -> Sequence[Knock]: ...


class SpaPackets(Protocol):
    """What `serve` needs of SPA (knocknft.daemon.spa.SpaService): its reader, once bound."""

    def fileno(self) -> int | None: ...

    def drain(self) -> None: ...

    def reload(self, config: Config) -> None: ...


class ResolvedSource(Protocol):
    """What `serve` needs of the always_allow resolver (trusted.ResolverThread)."""

    def fileno(self) -> int: ...

    def take(self) -> tuple[tuple[str, IPAddress], ...] | None: ...


class TableEventSource(Protocol):
    """What `serve` needs of the nf_tables notification socket (nftevents.TableEvents)."""

    def fileno(self) -> int: ...

    def read(self, table: str) -> Sequence[TableEvent]: ...


def serve(  # noqa: C901, PLR0912, PLR0915 - the loop: a branch per thing that wakes it (packets, SPA, table news, names, signals, timers)
    daemon: Daemon,
    source: PacketSource,
    *,
    load: Callable[[], Config],
    source_stats: Callable[[], SourceStats],
    on_ready: Callable[[], None] = lambda: None,
    on_reload: Callable[[bool], None] = lambda ok: None,
    on_stats: Callable[[DaemonStats], None] = lambda stats: None,
    table_events: TableEventSource | None = None,
    resolved: ResolvedSource | None = None,
    spa: SpaPackets | None = None,
) -> None:
    """Run until SIGTERM/SIGINT: packets, timers, SIGHUP reloads, periodic stats, our table put
    back when another tool deletes it, and always_allow's host names as they resolve anew.

    `load` is called when a reload begins; `on_reload` when it has ended, with its success.
    The stats go to stats.json and to `on_stats` (the metrics endpoint, systemd's status line)
    every STATS_INTERVAL and once before the daemon says it is ready, so it is known from its
    first moment.
    """
    signals = Signals()
    selector = selectors.DefaultSelector()
    watched: dict[str, _Selectable | None] = {
        "nflog": source,
        "signal": signals,
        "table": table_events,
        "resolved": resolved,
    }
    for name, each in watched.items():
        if each is not None:
            selector.register(each.fileno(), selectors.EVENT_READ, name)
    spa_watched = _watch_spa(selector, spa, None)
    stats_file = stats_path(daemon.config)

    def report() -> None:
        stats = daemon.stats(source_stats())
        write_stats(stats_file, stats)
        on_stats(stats)

    report()
    on_ready()
    next_stats = daemon.clock() + STATS_INTERVAL
    # Objects from start-up live as long as the daemon: keep them out of every future GC pass.
    gc.freeze()
    try:
        while not signals.stop:
            wakeup = daemon.next_wakeup()
            # Until the next timer or the next stats, whichever is first: a timer just before
            # the stats must not push them a whole interval later.
            due = next_stats if wakeup is None else min(wakeup, next_stats)
            timeout = max(0.0, due - daemon.clock())
            for key, _ in selector.select(timeout):
                if key.data == "nflog":
                    # Drain what is queued now, in batches, before timers run.
                    for _ in range(DRAIN_BATCHES):
                        batch = source.read_batch()
                        if not batch:
                            break
                        daemon.handle_packets(batch)
                elif key.data == "table" and table_events is not None:
                    daemon.on_table_events(table_events.read(daemon.config.options.table))
                elif key.data == "resolved" and resolved is not None:
                    _take_resolved(daemon, resolved)
                elif key.data == "spa" and spa is not None:
                    spa.drain()
                else:
                    signals.drain()
            now = daemon.clock()
            # Timers only when one is due: under a flood this loop turns for every few packets.
            if wakeup is not None and now >= wakeup:
                daemon.tick()
            if signals.reload:
                signals.reload = False
                reloaded = _reload(daemon, load)
                if reloaded and spa is not None:
                    spa.reload(daemon.config)
                    spa_watched = _watch_spa(selector, spa, spa_watched)
                on_reload(reloaded)
            if now >= next_stats:
                next_stats = now + STATS_INTERVAL
                daemon.check_table()
                daemon.report_held_back()
                report()
    finally:
        report()
        selector.close()
        signals.close()


def _watch_spa(
    selector: selectors.BaseSelector, spa: SpaPackets | None, watched: int | None
) -> int | None:
    """The SPA reader's descriptor in the selector, once there is one (a reload may bind it)."""
    fd = spa.fileno() if spa is not None else None
    if fd is not None and fd != watched:
        selector.register(fd, selectors.EVENT_READ, "spa")
    return fd if fd is not None else watched


def _take_resolved(daemon: Daemon, resolved: ResolvedSource) -> None:
    addresses = resolved.take()
    if addresses is not None:
        daemon.on_resolved(addresses)


def _reload(daemon: Daemon, load: Callable[[], Config]) -> bool:
    """Load and switch to the config as it is now on disk; on any failure keep the running one.

    Every exception counts, not only ours: a YAML parser out of stack (RecursionError), a file
    that is not UTF-8, an OSError or a bug must never take the gate down with it. The message
    names the error only: it may come from a file that holds secrets (one-time sequences).
    """
    log.info("SIGHUP: reloading the config")
    try:
        config = load()
        daemon.reload(config)
    except KnocknftError as exc:
        log.error("reload failed, still running the previous config:\n%s", exc)
        return False
    except Exception as exc:  # any at all, see above: a reload never kills the daemon
        log.error(
            "reload failed (%s), still running the previous config: %s",
            type(exc).__name__,
            _short(exc),
        )
        return False
    log.info("reloaded: %d door(s)", len(daemon.config.doors))
    return True


def _short(exc: BaseException, limit: int = 200) -> str:
    """An unexpected error's text, cut short: it may quote whatever input raised it."""
    text = str(exc).replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."
