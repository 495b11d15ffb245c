"""The daemon's executor: NFLOG packets in, engine events out, their effects carried out.

What the events mean is decided in `knocknft.core.decide`; `Daemon` carries the effects out in
the order decided (grants and revokes through nft, commands, stop records, log lines, the audit
log). It holds no socket of its own: `handle_packets` and `tick` are driven by
`knocknft.daemon.loop.serve`, which owns the NFLOG socket, the timer and the signals. Tests drive
`Daemon` directly with packets and a clock; the integration tests run the real loop in a
namespace.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from knocknft import __version__
from knocknft.config import Config, IPAddress
from knocknft.core.decide import (
    Audit,
    BanSources,
    Effect,
    ExtendStop,
    GrantServices,
    LogLine,
    MarkOneTime,
    RefusedSource,
    ReportBan,
    ReportGrant,
    RevokeServices,
    RunCommand,
    ScheduleStop,
    SourceCheck,
    decide,
    stop_command_for,
)
from knocknft.core.engine import Engine, Knock
from knocknft.core.events import (
    Event,
    Evicted,
    Invalidated,
    OneTimeUsed,
    Progress,
    TimedOut,
)
from knocknft.core.grants import Grant
from knocknft.core.sources import from_loopback, hears_loopback, refusal
from knocknft.daemon.auditlog import EventLog
from knocknft.daemon.bans import Banner
from knocknft.daemon.commands import CommandRunner
from knocknft.daemon.grantends import GrantEnds
from knocknft.daemon.granter import Granter
from knocknft.daemon.keeper import TableKeeper
from knocknft.daemon.loglimit import KnockLog
from knocknft.daemon.logs import VERBOSE
from knocknft.daemon.names import NameCache
from knocknft.daemon.onetime import mark_first
from knocknft.daemon.reports import DaemonCounters, DaemonReports
from knocknft.daemon.stats import NO_SOURCE_STATS, DaemonStats, SourceStats
from knocknft.daemon.stops import STATE_FILE, PendingStops
from knocknft.daemon.trusted import Resolved, refill
from knocknft.netlink.nftevents import TableEvent
from knocknft.nft.libnft import Nft
from knocknft.nft.operations import ApplyResult, apply_config

log = logging.getLogger("knocknft")


@dataclass
class Daemon(DaemonReports):
    config: Config
    nft: Nft
    commands: CommandRunner
    pending: PendingStops
    clock: Callable[[], float] = time.time
    # With a knockd.conf the commands are the only effect, as under knockd.
    native_grants: bool = True
    # knockd's -4: IPv6 knocks are dropped by the table as always, but never reach the engine.
    only_ipv4: bool = False
    # knockd's -l: names for log lines, from a cache that never blocks this loop.
    names: NameCache | None = None
    # options.event_log: what an admin audits, one JSON line each; never per knock.
    audit: EventLog | None = None
    # Why a source may never be granted: by default the address classes alone; the daemon adds
    # this host's own addresses (knocknft.netlink.hostaddrs.HostAddressWatcher.refusal).
    source_check: SourceCheck = refusal
    counters: DaemonCounters = field(default_factory=DaemonCounters)

    def __post_init__(self) -> None:
        self.engine = Engine(self.config.doors, self.config.options.max_attempts)
        self.knock_log = KnockLog(self.clock)
        # OPEN, grant and refused-source lines: one per completion, so a flood of completed
        # sequences is limited too, by a bucket of its own so knock lines cannot starve it.
        self.grant_log = KnockLog(self.clock, what="OPEN and grant log lines")
        self.ends = GrantEnds(
            self.clock,
            allow=self.grant_log.allow,
            audit=self._audit,
            who=self._who,
            relist=lambda: self.keeper.memory.live(self.clock()),
        )
        self.granter = Granter(
            self.nft,
            self.clock,
            allow=self.grant_log.allow,
            audit=self._audit,
            who=self._who,
            taken=self.ends.taken,
        )
        self.banner = Banner(self.nft, allow=self.grant_log.allow, audit=self._audit, who=self._who)
        self.keeper = TableKeeper(self.nft, self.clock)
        self.started = self.clock()
        self._one_time = _has_one_time(self.config)

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Apply the table (keeping grants), then run stop commands that fell due while down.

        The stop records are read first: a state dir that cannot be trusted stops the start
        before the kernel is touched."""
        self.pending.load(self.clock())
        result = apply_config(self.nft, self.config)
        self.keeper.seed(result.grants, self.config.options.table)
        self.granter.seed(result.grants)
        self.ends.seed(result.grants)
        log.info(
            "table inet %s %s, %d open grant(s) kept",
            self.config.options.table,
            "replaced" if result.replaced else "installed",
            result.grants_kept,
        )
        warn_if_unsaved(result)
        self._run_due_stops(self.clock(), " (overdue from before a restart)")
        if len(self.pending):
            log.info("%d stop command(s) pending from before a restart", len(self.pending))

    def reload(self, config: Config) -> None:
        """Switch to a new, already validated config: re-apply the table, keep attempts."""
        result = apply_config(self.nft, config)
        warn_if_unsaved(result)
        # The kernel's word; the table may have a new name.
        self.keeper.seed(result.grants, config.options.table)
        self.granter.seed(result.grants)
        self.ends.seed(result.grants)
        self.config = config
        self.engine.reload(config.doors, config.options.max_attempts)
        self._one_time = _has_one_time(config)

    def on_resolved(self, resolved: Resolved) -> None:
        """always_allow's host names resolved anew (knocknft.daemon.trusted's thread)."""
        self.config = refill(self.config, self.nft, resolved)

    def on_table_events(self, events: Sequence[TableEvent]) -> None:
        """News of our table from the kernel: grants to remember, or the table gone."""
        self.keeper.on_events(self.config, events)  # first: lost news makes it re-read the sets
        self.ends.on_events(events)

    def check_table(self) -> None:
        """The fallback look, for when news was lost: is our table still there?"""
        self.keeper.check(self.config)

    # -- the work -----------------------------------------------------------------------------

    def handle_packets(self, packets: Iterable[Knock]) -> None:
        events: list[Event] = []
        # Asked once per batch: -D shows every knock packet, as knockd -D does.
        debug = log.isEnabledFor(logging.DEBUG)
        # Looked up once per batch, not once per packet: this loop is the hot path.
        only_ipv4 = self.only_ipv4
        on_knock = self.engine.on_knock
        for packet in packets:
            if only_ipv4 and packet.source.version == 6:
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
            events += on_knock(packet)
        self.execute(events)

    def tick(self) -> None:
        """Timer work: expire attempts, run due stop commands, fsync new stop records."""
        now = self.clock()
        self.execute(self.engine.expire(now))
        self.ends.due(now)
        self._run_due_stops(now)
        self.pending.sync(now)

    def _run_due_stops(self, now: float, why: str = "") -> None:
        # Out of the file (marked and fsynced) before any of them runs: none runs twice.
        for stop in self.pending.take_due(now):
            command = stop.command or self._stop_command(stop.door, stop.address)
            if command is None:
                # Read from disk after a restart, for a door the config no longer has (or that
                # has no stop command): nothing says what would close it.
                log.error(
                    "%s: %s: stop record dropped: the config has no stop command for this door",
                    self._who(stop.address),
                    stop.door,
                )
                self._audit("stop_dropped", source=stop.address, door=stop.door)
                continue
            log.info("%s: %s: command timeout%s", self._who(stop.address), stop.door, why)
            self._audit("command_timeout", source=stop.address, door=stop.door)
            self.commands.submit(stop.door, command, stop.address)
            self.counters.commands += 1

    def _stop_command(self, door_name: str, address: IPAddress | str) -> str | None:
        """The running config's stop command for `door_name`, rendered for `address`."""
        door = next((d for d in self.config.doors if d.name == door_name), None)
        if door is None:
            return None
        if isinstance(address, str):
            address = ipaddress.ip_address(address)
        return stop_command_for(door, address)

    def next_wakeup(self) -> float | None:
        times = (self.engine.next_deadline(), self.pending.next_due(), self.ends.next_due())
        return min((t for t in times if t is not None), default=None)

    def execute(self, events: Sequence[Event]) -> None:
        """Carry out what the events mean."""
        if self._one_time:
            events = mark_first(events, self._mark_failed)
        self.carry_out(
            decide(events, self.pending, native_grants=self.native_grants, refuse=self.refusal)
        )

    def refusal(self, address: IPAddress) -> str | None:
        """source_check, but a loopback source is this host knocking itself when knocks are heard
        on loopback (the one-machine lab); see knocknft.core.sources. For a packet's source only:
        an address a packet names is the sender's word, not the kernel's."""
        if from_loopback(address) and hears_loopback(self.config.options.interfaces):
            return None
        return self.source_check(address)

    def report_held_back(self) -> None:
        """The periodic summary of the log lines the rate limits held back."""
        self.knock_log.report()
        self.grant_log.report()

    def _mark_failed(self, event: OneTimeUsed, exc: OSError) -> None:
        door, path = event.door.name, event.door.one_time_sequences
        log.error(
            "%s: cannot mark line %d of %s as used (%s): that knock opens nothing, and the "
            "door stays shut until the file can be written and the daemon restarts",
            door,
            event.line,
            path,
            exc.strerror or exc,
        )
        self._audit("one_time_mark_failed", door=door, file=path, line=event.line)
        self.engine.disable(door, f"line {event.line} of {path} cannot be marked as used")

    def carry_out(self, effects: Sequence[Effect]) -> None:  # noqa: C901, PLR0912 - per-packet dispatch, flat on purpose: a call per effect costs more
        """Each effect in turn, in the order decided. The per-knock lines come first in this
        chain, by `type(e) is`: under a flood they are nearly all there is."""
        verbose = log.isEnabledFor(VERBOSE)
        knock_log = self.knock_log
        failed: set[Grant] = set()  # this batch's grants that did not go in: no report for them
        for effect in effects:
            if type(effect) is Progress:
                if knock_log.allow():
                    log.info(
                        "%s: %s: Stage %d", self._who(effect.source), effect.door.name, effect.stage
                    )
            elif type(effect) is Evicted:
                # Per-attempt detail, one line per forged source under a flood: limited too.
                if verbose and knock_log.allow():
                    log.log(
                        VERBOSE,
                        "%s: %s: attempt evicted (cap %d)",
                        self._who(effect.source),
                        effect.door.name,
                        self.engine.max_attempts,
                    )
            elif type(effect) is TimedOut:
                if knock_log.allow():
                    log.info(
                        "%s: %s: sequence timeout (stage %d)",
                        self._who(effect.source),
                        effect.door.name,
                        effect.stage,
                    )
            elif type(effect) is Invalidated:
                if verbose and knock_log.allow():
                    log.log(
                        VERBOSE,
                        "%s: %s: sequence broken at stage %d",
                        self._who(effect.source),
                        effect.door.name,
                        effect.stage,
                    )
            elif isinstance(effect, GrantServices):
                failed = self.granter.grant(self.config.options.table, effect.grants)
            elif isinstance(effect, ReportGrant):
                if effect.grant not in failed:
                    self._report_grant(effect.grant)
            else:
                self._carry_out_rare(effect)

    def _carry_out_rare(self, effect: Effect) -> None:  # noqa: C901 - one case per effect kind
        match effect:
            case LogLine():
                self._log_line(effect)
            case Audit(event, fields):
                self._audit(event, **fields)
            case RevokeServices(revocations):
                self.ends.close(self.nft, self.config.options.table, revocations)
            case BanSources(bans):
                self.banner.ban(self.config.options.table, bans)
            case ReportBan(ban):
                self.banner.report(ban)
            case RunCommand(door, command, client):
                self.commands.submit(door, command, client)
                self.counters.commands += 1
            case ScheduleStop(door, address, due):
                # Rendered now, from the config that decided it: the stop that pairs with the
                # start command about to run, kept in memory only, never read back from disk.
                stop = self._stop_command(door, address)
                if stop is not None:
                    self.pending.schedule(door, address, due, stop)
            case ExtendStop(door, address, due):
                self.pending.extend(door, address, due)
                self.counters.refreshed += 1
            case MarkOneTime():
                self._report_one_time(effect)
            case RefusedSource():
                self._refused_source(effect)

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
            "retransmissions_ignored": e.retransmissions_ignored,
            "attempts_tracked": self.engine.tracked,
            "attempts_cap": self.engine.max_attempts,
            "grants": self.granter.granted,
            "grant_failures": self.granter.failed,
            "grants_evicted": self.granter.evicted,
            "bans": self.banner.banned,
            "ban_failures": self.banner.failed,
            "odd_addresses_refused": self.counters.odd_addresses_refused,
            "commands_started": self.counters.commands,
            "grants_refreshed": self.counters.refreshed,
            "ipv6_ignored": self.counters.ipv6_ignored,
            "commands_failed": getattr(self.commands, "failed", 0),
            "pending_stop_commands": len(self.pending),
            "knock_log_suppressed": self.knock_log.suppressed + self.grant_log.suppressed,
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


def _has_one_time(config: Config) -> bool:
    return any(door.one_time_sequences is not None for door in config.doors)


def pending_path(config: Config) -> Path:
    return config.options.state_dir / STATE_FILE
