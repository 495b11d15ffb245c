"""`knocknft run`: wires the config, the nft adapter, the NFLOG socket and the daemon together."""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from knocknft import __version__
from knocknft.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    HostInterfaces,
    Options,
)
from knocknft.daemon.auditlog import EventLog
from knocknft.daemon.commands import ShellRunner
from knocknft.daemon.detach import DEFAULT_PID_FILE, Readiness, detach
from knocknft.daemon.executor import Daemon, pending_path
from knocknft.daemon.logs import setup_logging
from knocknft.daemon.loop import serve
from knocknft.daemon.metrics import MetricsServer
from knocknft.daemon.names import NameCache
from knocknft.daemon.notify import Notifier, OpenGrants, status_line
from knocknft.daemon.stats import STATS_INTERVAL, DaemonStats, SourceStats
from knocknft.daemon.stops import PendingStops
from knocknft.daemon.tablelock import TableLock
from knocknft.daemon.trusted import NameResolver, ResolverThread, resolve_config
from knocknft.errors import KnocknftError, NftError, UsageError
from knocknft.knockd.grammar import load_any_config
from knocknft.netlink.base import interface_names
from knocknft.netlink.hostaddrs import HostAddressWatcher
from knocknft.netlink.nflog import NflogSocket
from knocknft.netlink.nflog_decoder import NflogCounters
from knocknft.netlink.nftevents import TableEvents
from knocknft.nft.libnft import LibNft
from knocknft.nft.queries import doctor_warnings

log = logging.getLogger("knocknft")

# knockd's default config: used when knocknft's own is absent and no -c is given, so a knockd
# unit or init script keeps working with only the binary swapped.
KNOCKD_CONFIG_PATH = Path("/etc/knockd.conf")


@dataclass(frozen=True)
class RunOptions:
    """What the command line of `knocknft run` (knockd's flags included) asks for."""

    interfaces: tuple[str, ...] = ()
    verbose: bool = False
    debug: bool = False
    state_dir: Path | None = None
    log_file: Path | None = None  # -g: overrides the config's log file
    daemon: bool = False  # -d
    pid_file: Path | None = None  # -p: overrides knockd.conf's PidFile
    lookup: bool = False  # -l
    only_ipv4: bool = False  # -4
    knockd_fallback: bool = False  # no -c, no config of ours: /etc/knockd.conf is read instead

    def absolute(self) -> RunOptions:
        """Paths made absolute now: a daemon runs from / and re-reads them later."""
        return dataclasses.replace(
            self,
            state_dir=_absolute(self.state_dir),
            log_file=_absolute(self.log_file),
            pid_file=_absolute(self.pid_file),
        )


def _absolute(path: Path | None) -> Path | None:
    return None if path is None else path.absolute()


@dataclass(frozen=True)
class RunConfig:
    config: Config
    # YAML: native grants; knockd.conf: its commands are the only effect, as under knockd.
    native: bool
    pid_file: Path | None = None  # knockd.conf's PidFile


def config_path_for_run(path: Path, knockd_path: Path = KNOCKD_CONFIG_PATH) -> Path:
    """The default config, or knockd's when ours does not exist and knockd's does."""
    if path == DEFAULT_CONFIG_PATH and not path.exists() and knockd_path.exists():
        return knockd_path
    return path


def load_for_run(path: Path, options: RunOptions, host: HostInterfaces | None = None) -> RunConfig:
    """The config to run, with the command line's overrides applied. Every interface named (in
    the config, or with -i) must exist on `host` (default: this one), or be a late_interfaces."""
    host = host or HostInterfaces(interface_names())
    loaded, knockd_options = load_any_config(path, host)
    config = loaded.config
    missing = host.missing(options.interfaces, config.options.late_interfaces)
    if missing:
        message, hint = host.explain(missing[0], "interface")
        raise UsageError(f"-i {missing[0]}: {message}; {hint}")
    native = knockd_options is None
    pid_file = None if knockd_options is None else knockd_options.pid_file
    overrides: dict[str, object] = {}
    if options.state_dir is not None:
        overrides["state_dir"] = options.state_dir
    if options.interfaces:
        overrides["interfaces"] = options.interfaces
    if options.log_file is not None:
        overrides["log_file"] = options.log_file
    if overrides:
        config = dataclasses.replace(
            config,
            options=dataclasses.replace(config.options, **overrides),  # type: ignore[arg-type]
        )
    return RunConfig(config, native, pid_file)


def run_daemon(path: Path, options: RunOptions) -> int:
    chosen = config_path_for_run(path)
    if chosen != path:
        options = dataclasses.replace(options, knockd_fallback=True)
    path = chosen.absolute()
    options = options.absolute()
    loaded = load_for_run(path, options)  # config errors stop us here, before any detaching
    config = loaded.config
    readiness: Readiness | None = None
    if options.daemon:
        setup_logging(config.options, verbose=options.verbose, debug=options.debug)
        if config.options.log_file is None and not config.options.syslog:
            log.warning("-d without a log file (-g FILE) or syslog: the daemon's log is lost")
        readiness = detach(_absolute(options.pid_file or loaded.pid_file) or DEFAULT_PID_FILE)
        if readiness is None:
            return 0  # the original process: the daemon is up and listening
    try:
        return _serve(path, options, loaded, readiness)
    except BaseException as exc:
        if readiness is not None:
            readiness.failed(str(exc) or type(exc).__name__)
        raise
    finally:
        if readiness is not None:
            readiness.close()


def _watch_table() -> TableEvents | None:
    try:
        return TableEvents()
    except NftError as exc:
        log.warning("%s: a deleted table is noticed within %gs only", exc, STATS_INTERVAL)
        return None


# Options a reload cannot change under a running daemon: what they set up (the NFLOG socket's
# group, the table's lock and name, the metrics server, the event log) lives on until a restart.
# A reload keeps their running values, so the table never logs knocks to a group nobody listens
# on, and no table of ours is left behind still dropping the services while grants go to another.
RESTART_ONLY = ("table", "nflog_group", "metrics", "event_log")


RESTART_HINTS = {
    # The old table is not ours to forget: after the restart it would still drop the services.
    "table": "; after the restart, `nft delete table inet {old}`: it would still drop the services",
}


def _watch_host_addresses() -> HostAddressWatcher | None:
    """This host's addresses, which are never granted; without them, the address classes."""
    try:
        return HostAddressWatcher()
    except OSError as exc:
        log.warning(
            "cannot watch this host's addresses (%s): a knock from one of them would be granted",
            exc,
        )
        return None


def keep_restart_only(old: Options, new: Options) -> tuple[Options, list[str]]:
    """`new` with the restart-only options as they run now, and the names of those it changed."""
    changed = [key for key in RESTART_ONLY if getattr(old, key) != getattr(new, key)]
    return dataclasses.replace(new, **{key: getattr(old, key) for key in changed}), changed


def source_stats(nflog: NflogCounters, names: NameCache | None) -> SourceStats:
    """The NFLOG reader's and the name cache's counters, for stats.json beside the daemon's."""
    return {
        "nflog_messages": nflog.messages,
        "nflog_lost": nflog.lost,
        "nflog_overruns": nflog.overruns,
        "nflog_malformed": sum(nflog.malformed.values()),
        "nflog_not_knocks": sum(nflog.non_knock.values()),
        "lookups_dropped": names.dropped if names is not None else 0,
    }


class _Hooks:
    """What the loop calls back while the daemon runs: readiness, reloads and the periodic
    stats, told to systemd, the metrics endpoint and the log."""

    def __init__(
        self,
        path: Path,
        options: RunOptions,
        daemon: Daemon,
        nflog: NflogSocket,
        *,
        names: NameCache | None,
        resolver: ResolverThread,
        systemd: Notifier,
        metrics: MetricsServer | None,
        readiness: Readiness | None,
    ) -> None:
        self.path = path
        self.options = options
        self.daemon = daemon
        self.nflog = nflog
        self.names = names
        self.resolver = resolver
        self.systemd = systemd
        self.metrics = metrics
        self.readiness = readiness
        self.open_grants = OpenGrants(daemon.nft, lambda: daemon.config.options.table)
        self.reload_failed = False
        self.lost_reported = 0

    def counters(self) -> SourceStats:
        return source_stats(self.nflog.counters, self.names)

    def status(self, stats: DaemonStats, fresh: bool = False) -> str:
        return status_line(
            self.daemon.config,
            open_grants=self.open_grants.count(fresh),
            stats=stats,
            reload_failed=self.reload_failed,
        )

    def ready(self) -> None:
        config = self.daemon.config
        log.info(
            "knocknft %s: listening on NFLOG group %d (table inet %s, %d door(s))%s",
            __version__,
            config.options.nflog_group,
            config.options.table,
            len(config.doors),
            "; IPv6 knocks ignored (-4)" if self.options.only_ipv4 else "",
        )
        if self.readiness is not None:
            self.readiness.ready()
        if self.systemd.enabled:
            self.systemd.ready(self.status(self.daemon.stats(self.counters()), fresh=True))

    def reload(self) -> Config:
        self.systemd.reloading()
        new = load_for_run(self.path, self.options).config
        # The names' last addresses, without waiting for a resolver; `reloaded` asks anew.
        resolved = self.resolver.resolver.known(new.options.always_allow_names)
        new = dataclasses.replace(new, always_allow_resolved=resolved)
        warn_unwritable_one_time_files(new)
        kept, changed = keep_restart_only(self.daemon.config.options, new.options)
        for key in changed:
            log.warning(
                "options.%s changed: it takes effect when the daemon restarts; "
                "until then the running value stays%s",
                key,
                RESTART_HINTS.get(key, "").format(old=getattr(self.daemon.config.options, key)),
            )
        return dataclasses.replace(new, options=kept)

    def reloaded(self, ok: bool) -> None:
        self.reload_failed = not ok
        if ok:
            self.resolver.want(self.daemon.config.options.always_allow_names)
        # READY=1 either way: the daemon runs, on the new config or on the old one.
        if self.systemd.enabled:
            self.systemd.ready(self.status(self.daemon.stats(self.counters()), fresh=True))

    def stats_ticked(self, stats: DaemonStats) -> None:
        lost = self.nflog.counters.lost
        if lost > self.lost_reported:
            # Knocks the kernel logged but could not queue to us: a sequence may break.
            log.warning(
                "NFLOG group %d: %d knock packet(s) lost in the last %gs (%d in all): "
                "the daemon fell behind; see `knocknft status --stats`",
                self.daemon.config.options.nflog_group,
                lost - self.lost_reported,
                STATS_INTERVAL,
                lost,
            )
            self.lost_reported = lost
        if self.metrics is not None:
            self.metrics.publish(stats)
        if self.systemd.enabled:
            self.systemd.status(self.status(stats))


def _serve(path: Path, options: RunOptions, loaded: RunConfig, readiness: Readiness | None) -> int:
    config = loaded.config
    setup_logging(config.options, verbose=options.verbose, debug=options.debug)
    if options.knockd_fallback:
        log.info("reading knockd's %s (%s does not exist)", path, DEFAULT_CONFIG_PATH)
    warn_unwritable_one_time_files(config)
    group = config.options.nflog_group
    # The start's order is what keeps a second daemon harmless: the table's lock first, then the
    # NFLOG group, and only then the kernel's ruleset. A daemon that finds either taken stops
    # before it has changed anything, and the one running keeps its table and its knocks.
    with TableLock(config.options.table, f"config {path}, NFLOG group {group}"):
        systemd = Notifier.from_environment()
        try:
            return _serve_locked(path, options, loaded, readiness, systemd)
        except KnocknftError as exc:
            systemd.status(f"failed: {exc}")
            raise
        finally:
            systemd.close()


def _serve_locked(
    path: Path,
    options: RunOptions,
    loaded: RunConfig,
    readiness: Readiness | None,
    systemd: Notifier,
) -> int:
    resolver = NameResolver()
    config = resolve_config(loaded.config, resolver)  # before the loop: it may wait
    event_log = config.options.event_log
    audit = EventLog(event_log) if event_log is not None else None
    commands = ShellRunner(on_done=audit.command if audit is not None else None)
    names = NameCache() if options.lookup else None
    host_addresses = _watch_host_addresses()
    daemon = Daemon(
        config,
        LibNft(),
        commands,
        PendingStops(pending_path(config)),
        native_grants=loaded.native,
        only_ipv4=options.only_ipv4,
        names=names,
        audit=audit,
    )
    if host_addresses is not None:
        daemon.source_check = host_addresses.refusal
    group = config.options.nflog_group
    # Listening before the start's apply, so no grant announced after it is missed.
    table_events = _watch_table()
    metrics: MetricsServer | None = None
    trusted = ResolverThread(resolver, config.options.always_allow_names)
    try:
        if config.options.metrics is not None:
            # Before the table: a port in use stops the start before anything changed.
            metrics = MetricsServer(config.options.metrics)
        with NflogSocket(group) as nflog:
            systemd.status(f"starting: loading table inet {config.options.table}")
            daemon.start()
            for warning in doctor_warnings(LibNft(), config):
                log.warning("%s", warning)
            hooks = _Hooks(
                path,
                options,
                daemon,
                nflog,
                names=names,
                resolver=trusted,
                systemd=systemd,
                metrics=metrics,
                readiness=readiness,
            )
            serve(
                daemon,
                nflog,
                load=hooks.reload,
                source_stats=hooks.counters,
                on_ready=hooks.ready,
                on_reload=hooks.reloaded,
                on_stats=hooks.stats_ticked,
                table_events=table_events,
                resolved=trusted,
            )
            # Commands still running get up to their time limit to finish: say so first.
            systemd.stopping(
                f"stopping: running commands get up to {commands.time_limit:g}s to finish"
            )
    finally:
        for closing in (metrics, table_events, trusted, host_addresses, commands, names, audit):
            # The audit log last: commands still running log their end to it.
            if closing is not None:
                closing.close()
    log.info("stopped; NFLOG group %d unbound, table and grants left in place", group)
    return 0


def warn_unwritable_one_time_files(config: Config) -> None:
    """A used one-time sequence is marked in its file; if the file cannot be written (a
    read-only /etc under the systemd unit's ProtectSystem=strict), the mark is lost at the next
    restart and the sequence would open the door again. Say so at start and on reload, not at
    the first use.
    """
    for door in config.doors:
        path = door.one_time_sequences
        if path is not None and not os.access(path, os.W_OK):
            log.error(
                "%s: %s is not writable: used one-time sequences cannot be marked and would "
                "work again after a restart (under systemd: ReadWritePaths=%s, see "
                "packaging/systemd/README.md)",
                door.name,
                path,
                path.parent,
            )
