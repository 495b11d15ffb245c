"""The daemon: NFLOG packets in, engine events out, carried out as grants, commands and log lines.

`Daemon` holds no socket of its own: `handle_packets` and `tick` are driven by `serve`, the loop
that owns the NFLOG socket, the timer and the signals. Tests drive `Daemon` directly with packets
and a clock; the integration tests run the real loop in a namespace.
"""

from __future__ import annotations

import contextlib
import gc
import ipaddress
import json
import logging
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from knocknft import __version__
from knocknft.config import Config, Door, IPAddress, PortSpec
from knocknft.core.engine import (
    DoorDisabled,
    Engine,
    Event,
    Evicted,
    Invalidated,
    Knock,
    OneTimeUsed,
    Opened,
    Progress,
    TimedOut,
)
from knocknft.core.grants import Grant, revoke_transaction
from knocknft.daemon.auditlog import EventLog
from knocknft.daemon.commands import CommandRunner, command_for, expand_command
from knocknft.daemon.keeper import TableKeeper
from knocknft.daemon.names import Labelled, NameCache
from knocknft.daemon.onetime import mark_used
from knocknft.daemon.stats import (
    NO_SOURCE_STATS,
    STATS_FILE,
    STATS_INTERVAL,
    DaemonStats,
    SourceStats,
)
from knocknft.daemon.stops import STATE_FILE, PendingStops
from knocknft.errors import KnocknftError
from knocknft.netlink.nftevents import TableEvent
from knocknft.nft.libnft import Nft
from knocknft.nft.operations import ApplyResult, apply_config

log = logging.getLogger("knocknft")

# Per-knock lines (Stage n, timeouts) are rate-limited so a flood cannot flood the log too.
KNOCK_LOG_RATE = 50.0
KNOCK_LOG_BURST = 200.0
# read_batch() calls per wake-up before timers and signals get their turn.
DRAIN_BATCHES = 8


class KnockLog:
    """A token bucket for per-knock log lines; counts what it holds back."""

    def __init__(
        self,
        clock: Callable[[], float],
        rate: float = KNOCK_LOG_RATE,
        burst: float = KNOCK_LOG_BURST,
    ) -> None:
        self._clock = clock
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._last = clock()
        self.suppressed = 0
        self._reported = 0

    def allow(self) -> bool:
        """Whether the bucket lets one more line through; counts it as held back if not.
        Asked before formatting, so a suppressed line costs no formatting at all."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self.suppressed += 1
        return False

    def report(self) -> None:
        if self.suppressed > self._reported:
            log.warning(
                "%d knock log lines suppressed (rate limit %g/s): a flood?",
                self.suppressed - self._reported,
                self._rate,
            )
            self._reported = self.suppressed


@dataclass
class DaemonCounters:
    grants: int = 0
    grant_failures: int = 0
    commands: int = 0
    refreshed: int = 0
    ipv6_ignored: int = 0


@dataclass
class Daemon:
    config: Config
    nft: Nft
    runner: CommandRunner
    pending: PendingStops
    clock: Callable[[], float] = time.time
    # With a knockd.conf the commands are the only effect, as under knockd.
    native_grants: bool = True
    # knockd's -4: IPv6 knocks are dropped by the table as always, but never reach the engine.
    only_ipv4: bool = False
    # knockd's -l: names for log lines, from a cache that never blocks this loop.
    names: NameCache | None = None
    # options.event_log: what an admin audits, one JSON line each; never per knock.
    events: EventLog | None = None
    counters: DaemonCounters = field(default_factory=DaemonCounters)

    def __post_init__(self) -> None:
        self.engine = Engine(self.config.doors, self.config.options.max_attempts)
        self.knock_log = KnockLog(self.clock)
        self.keeper = TableKeeper(self.nft, self.clock)
        self.started = self.clock()

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Apply the table (keeping grants), then run stop commands that fell due while down."""
        result = apply_config(self.nft, self.config)
        self.keeper.seed(result.grants)
        log.info(
            "table inet %s %s, %d open grant(s) kept",
            self.config.options.table,
            "replaced" if result.replaced else "installed",
            result.grants_kept,
        )
        warn_if_unsaved(result)
        self.pending.load()
        self._run_due_stops(self.clock(), " (overdue from before a restart)")
        if len(self.pending):
            log.info("%d stop command(s) pending from before a restart", len(self.pending))

    def reload(self, config: Config) -> None:
        """Switch to a new, already validated config: re-apply the table, keep attempts."""
        result = apply_config(self.nft, config)
        warn_if_unsaved(result)
        self.keeper.seed(result.grants)  # the kernel's word; the table may have a new name
        self.config = config
        self.engine.reload(config.doors, config.options.max_attempts)

    def on_table_events(self, events: Sequence[TableEvent]) -> None:
        """News of our table from the kernel: grants to remember, or the table gone."""
        self.keeper.on_events(self.config, events)

    def check_table(self) -> None:
        """The fallback look, for when news was lost: is our table still there?"""
        self.keeper.check(self.config)

    # -- the work -----------------------------------------------------------------------------

    def handle_packets(self, packets: Iterable[Knock]) -> None:
        events: list[Event] = []
        # Asked once per batch: -D shows every knock packet, as knockd -D does.
        debug = log.isEnabledFor(logging.DEBUG)
        for packet in packets:
            if self.only_ipv4 and packet.source.version == 6:
                self.counters.ipv6_ignored += 1
                continue
            if debug:
                log.debug(
                    "packet: %s -> %s %d/%s flags 0x%02x",
                    packet.source,
                    packet.destination,
                    packet.dport,
                    packet.protocol,
                    packet.tcp_flags,
                )
            events += self.engine.on_knock(packet)
        self.execute(events)

    def tick(self) -> None:
        """Timer work: expire attempts, run due stop commands."""
        now = self.clock()
        self.execute(self.engine.expire(now))
        self._run_due_stops(now)

    def _run_due_stops(self, now: float, why: str = "") -> None:
        for stop in self.pending.take_due(now):
            log.info("%s: %s: command timeout%s", self._who(stop.address), stop.door, why)
            self._event("command_timeout", source=stop.address, door=stop.door)
            self.runner.submit(stop.door, stop.command, stop.address)
            self.counters.commands += 1

    def next_wakeup(self) -> float | None:
        times = [t for t in (self.engine.next_deadline(), self.pending.next_due()) if t is not None]
        return min(times, default=None)

    def execute(self, events: Sequence[Event]) -> None:
        # `type(e) is`, not isinstance: the events are leaf classes, and under a flood this loop
        # runs for every packet, most of them Progress and Evicted.
        opened = [event for event in events if type(event) is Opened]
        # The set first: it is what the knocker waits for. Log lines, files and commands follow.
        granted: dict[Opened, list[Grant]] = {}
        if opened and self.native_grants:
            revokes = [(e.source, service, e.door.name) for e in opened for service in e.door.close]
            if revokes:
                self._revoke(revokes)
            granted = {event: self._grants_for(event.source, event.door) for event in opened}
            if not self._grant([g for grants in granted.values() for g in grants]):
                granted = {}
        debug = log.isEnabledFor(logging.DEBUG)
        knock_log = self.knock_log
        for event in events:
            if type(event) is Progress:
                if knock_log.allow():
                    log.info(
                        "%s: %s: Stage %d", self._who(event.source), event.door.name, event.stage
                    )
            elif type(event) is Evicted:
                # Per-attempt detail, one line per forged source under a flood: limited too.
                if debug and knock_log.allow():
                    log.debug(
                        "%s: %s: attempt evicted (cap %d)",
                        self._who(event.source),
                        event.door.name,
                        self.engine.max_attempts,
                    )
            elif type(event) is TimedOut:
                if knock_log.allow():
                    log.info(
                        "%s: %s: sequence timeout (stage %d)",
                        self._who(event.source),
                        event.door.name,
                        event.stage,
                    )
            elif type(event) is Invalidated:
                if debug and knock_log.allow():
                    log.debug(
                        "%s: %s: sequence broken at stage %d",
                        self._who(event.source),
                        event.door.name,
                        event.stage,
                    )
            elif isinstance(event, Opened):
                log.info("%s: %s: OPEN SESAME", self._who(event.source), event.door.name)
                self._event("open", source=event.source, door=event.door.name)
                for g in granted.get(event, ()):
                    log.info(
                        "%s: %s: granted %s for %ds",
                        self._who(g.address),
                        g.door,
                        g.service,
                        g.timeout,
                    )
                    self._event(
                        "grant", source=g.address, door=g.door, service=g.service, timeout=g.timeout
                    )
            elif isinstance(event, OneTimeUsed):
                self._mark_one_time(event)
            elif isinstance(event, DoorDisabled):
                log.warning(
                    "%s: door disabled: %s; the daemon keeps running", event.door.name, event.reason
                )
                self._event("door_disabled", door=event.door.name, reason=event.reason)
        for event in opened:
            self._start_commands(event.source, event.door, event.at)

    def _who(self, source: IPAddress | str) -> object:
        """The source as log lines show it: `addr`, or knockd's `addr (name)` under -l."""
        if self.names is None:
            return source
        if isinstance(source, str):  # pending stops keep the address as text
            try:
                source = ipaddress.ip_address(source)
            except ValueError:
                return source
        return Labelled(source, self.names)

    def _grants_for(self, source: IPAddress, door: Door) -> list[Grant]:
        if not door.open or door.open_for is None:
            return []
        return [Grant(source, service, door.name, door.open_for) for service in door.open]

    def _grant(self, grants: list[Grant]) -> bool:
        if not grants:
            return True
        try:
            self.nft.grant(self.config.options.table, grants)
        except KnocknftError as exc:
            self.counters.grant_failures += len(grants)
            log.error(
                "could not grant %s: %s", ", ".join(f"{g.address} {g.service}" for g in grants), exc
            )
            for g in grants:
                self._event(
                    "grant_failed", source=g.address, door=g.door, service=g.service, error=str(exc)
                )
            return False
        self.counters.grants += len(grants)
        return True

    def _revoke(self, revokes: list[tuple[IPAddress, PortSpec, str]]) -> None:
        """A closing door: remove the knocker's grants, as knockd's closeSSH deleted the rule."""
        keys = [(address, service) for address, service, _ in revokes]
        try:
            self.nft.apply(revoke_transaction(self.config.options.table, keys))
        except KnocknftError as exc:
            log.error("could not close %s: %s", ", ".join(f"{a} {s}" for a, s in keys), exc)
            return
        for address, service, door in revokes:
            log.info("%s: %s: closed %s", self._who(address), door, service)
            self._event("close", source=address, door=door, service=service)

    def _start_commands(self, source: IPAddress, door: Door, at: float) -> None:
        start = command_for(door.start_command, door.start_command_6, source)
        stop = command_for(door.stop_command, door.stop_command_6, source)
        if stop and self.pending.is_pending(door.name, source):
            # Still open from an earlier knock: extend the window instead of running the start
            # command again (knockd would add a second, duplicate firewall rule).
            self.pending.schedule(
                door.name, source, expand_command(stop, source), at + door.cmd_timeout
            )
            self.counters.refreshed += 1
            log.info(
                "%s: %s: still open; stop command moved to %ds from now",
                self._who(source),
                door.name,
                door.cmd_timeout,
            )
            self._event("refresh", source=source, door=door.name, stop_in=door.cmd_timeout)
            return
        if start:
            self.runner.submit(door.name, expand_command(start, source), source.compressed)
            self.counters.commands += 1
        if stop:
            self.pending.schedule(
                door.name, source, expand_command(stop, source), at + door.cmd_timeout
            )

    def _mark_one_time(self, event: OneTimeUsed) -> None:
        path = event.door.one_time_sequences
        if path is None:
            return
        try:
            mark_used(path, event.line)
        except OSError as exc:
            log.error(
                "%s: cannot mark line %d of %s as used: %s", event.door.name, event.line, path, exc
            )
            return
        log.info("%s: one-time sequence on line %d of %s used", event.door.name, event.line, path)
        self._event("one_time_used", door=event.door.name, file=path, line=event.line)

    def _event(self, name: str, **fields: object) -> None:
        # Only ever called for rare events, never per knock: off, it costs one comparison.
        if self.events is not None:
            self.events.write(name, **fields)

    # -- reporting ------------------------------------------------------------------------------

    def stats(self, sources: SourceStats = NO_SOURCE_STATS) -> DaemonStats:
        e = self.engine.counters
        return {
            "pid": os.getpid(),
            "version": __version__,
            "started": self.started,
            "updated": self.clock(),
            "knocks": e.knocks,
            "stages": e.stages,
            "opens": e.opens,
            "timeouts": e.timeouts,
            "invalidations": e.invalidations,
            "evictions": e.evictions,
            "flags_ignored": e.flags_ignored,
            "attempts_tracked": self.engine.tracked,
            "attempts_cap": self.engine.max_attempts,
            "grants": self.counters.grants,
            "grant_failures": self.counters.grant_failures,
            "commands_started": self.counters.commands,
            "grants_refreshed": self.counters.refreshed,
            "ipv6_ignored": self.counters.ipv6_ignored,
            "commands_failed": getattr(self.runner, "failed", 0),
            "pending_stop_commands": len(self.pending),
            "knock_log_suppressed": self.knock_log.suppressed,
            "table_restores": self.keeper.restores,
            **sources,
        }


def warn_if_unsaved(result: ApplyResult) -> None:
    if result.save_error is not None:
        log.warning(
            "table loaded, but not kept for the boot guard (%s): after a reboot, "
            "`knocknft guard` would load an older table, or none",
            result.save_error,
        )


def write_stats(path: Path, data: DaemonStats) -> None:
    tmp = path.with_suffix(".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("cannot write %s: %s", path, exc)


def pending_path(config: Config) -> Path:
    return config.options.state_dir / STATE_FILE


def stats_path(config: Config) -> Path:
    return config.options.state_dir / STATS_FILE


# -- the loop --------------------------------------------------------------------------------


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


class PacketSource(Protocol):
    """What `serve` needs of the NFLOG socket (NflogSocket provides it)."""

    def fileno(self) -> int: ...

    def read_batch(self) -> Sequence[Knock]: ...


class TableEventSource(Protocol):
    """What `serve` needs of the nf_tables notification socket (nftevents.TableEvents)."""

    def fileno(self) -> int: ...

    def read(self, table: str) -> Sequence[TableEvent]: ...


def serve(
    daemon: Daemon,
    source: PacketSource,
    *,
    load: Callable[[], Config],
    source_stats: Callable[[], SourceStats],
    on_ready: Callable[[], None] = lambda: None,
    on_reload: Callable[[bool], None] = lambda ok: None,
    on_stats: Callable[[DaemonStats], None] = lambda stats: None,
    table_events: TableEventSource | None = None,
) -> None:
    """Run until SIGTERM/SIGINT: packets, timers, SIGHUP reloads, periodic stats, and our
    table put back when another tool deletes it.

    `load` is called when a reload begins; `on_reload` when it has ended, with its success.
    The stats go to stats.json and to `on_stats` (the metrics endpoint, systemd's status line)
    every STATS_INTERVAL and once before the daemon says it is ready, so it is known from its
    first moment.
    """
    signals = Signals()
    selector = selectors.DefaultSelector()
    selector.register(source.fileno(), selectors.EVENT_READ, "nflog")
    selector.register(signals.fileno(), selectors.EVENT_READ, "signal")
    if table_events is not None:
        selector.register(table_events.fileno(), selectors.EVENT_READ, "table")
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
            timeout = (
                STATS_INTERVAL
                if wakeup is None
                else max(0.0, min(wakeup - daemon.clock(), STATS_INTERVAL))
            )
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
                else:
                    signals.drain()
            now = daemon.clock()
            # Timers only when one is due: under a flood this loop turns for every few packets.
            if wakeup is not None and now >= wakeup:
                daemon.tick()
            if signals.reload:
                signals.reload = False
                on_reload(_reload(daemon, load))
            if now >= next_stats:
                next_stats = now + STATS_INTERVAL
                daemon.check_table()
                daemon.knock_log.report()
                report()
    finally:
        report()
        selector.close()
        signals.close()


def _reload(daemon: Daemon, load: Callable[[], Config]) -> bool:
    log.info("SIGHUP: reloading the config")
    try:
        config = load()
        daemon.reload(config)
    except KnocknftError as exc:
        log.error("reload failed, still running the previous config:\n%s", exc)
        return False
    log.info("reloaded: %d door(s)", len(daemon.config.doors))
    return True
