"""`knocknft run`: wires the config, the nft adapter, the NFLOG socket and the daemon together."""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from knocknft.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    HostInterfaces,
    Options,
)
from knocknft.core.lockout import ssh_lockout
from knocknft.daemon.auditlog import EventLog
from knocknft.daemon.commands import ShellRunner
from knocknft.daemon.detach import DEFAULT_PID_FILE, Readiness, detach
from knocknft.daemon.executor import Daemon, pending_path
from knocknft.daemon.hooks import Hooks
from knocknft.daemon.logs import setup_logging
from knocknft.daemon.loop import serve
from knocknft.daemon.metrics import MetricsServer
from knocknft.daemon.names import NameCache
from knocknft.daemon.notify import Notifier
from knocknft.daemon.spa import SpaService
from knocknft.daemon.stats import STATS_INTERVAL
from knocknft.daemon.stops import PendingStops
from knocknft.daemon.tablelock import TableLock
from knocknft.daemon.trusted import NameResolver, ResolverThread, resolve_config
from knocknft.errors import KnocknftError, NftError, UsageError
from knocknft.knockd.grammar import load_any_config
from knocknft.netlink.base import interface_names
from knocknft.netlink.hostaddrs import HostAddressWatcher
from knocknft.netlink.nflog import NflogSocket, spa_socket
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
# SPA's group likewise; its window and replay cache size too, as the replay cache holds each
# packet for the window it was accepted under (knocknft.daemon.spa_replay).
RESTART_ONLY = (
    "table",
    "nflog_group",
    "metrics",
    "event_log",
    "spa_nflog_group",
    "spa_window",
    "spa_replay_cache",
)


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


def reload_config(
    path: Path, options: RunOptions, daemon: Daemon, resolver: NameResolver
) -> Config:
    """The config as it is on disk now, for a reload: always_allow's names as last resolved, the
    restart-only options as they run (each one changed is logged)."""
    new = load_for_run(path, options).config
    # The names' last addresses, without waiting for a resolver; the loop asks anew after.
    new = dataclasses.replace(
        new, always_allow_resolved=resolver.known(new.options.always_allow_names)
    )
    warn_unwritable_one_time_files(new)
    kept, changed = keep_restart_only(daemon.config.options, new.options)
    for key in changed:
        log.warning(
            "options.%s changed: it takes effect when the daemon restarts; "
            "until then the running value stays%s",
            key,
            RESTART_HINTS.get(key, "").format(old=getattr(daemon.config.options, key)),
        )
    return dataclasses.replace(new, options=kept)


def keep_restart_only(old: Options, new: Options) -> tuple[Options, list[str]]:
    """`new` with the restart-only options as they run now, and the names of those it changed."""
    changed = [key for key in RESTART_ONLY if getattr(old, key) != getattr(new, key)]
    return dataclasses.replace(new, **{key: getattr(old, key) for key in changed}), changed


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
    lockout = ssh_lockout(config, os.environ.get("SSH_CONNECTION", ""))  # run by hand over SSH
    if lockout is not None:
        log.warning("%s", lockout.warning(confirming=None))
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
    spa = SpaService(daemon, spa_socket)
    try:
        if config.options.metrics is not None:
            # Before the table: a port in use stops the start before anything changed.
            metrics = MetricsServer(config.options.metrics)
        with NflogSocket(group) as nflog:
            spa.start()  # SPA's group too, and its replay file, before the table
            systemd.status(f"starting: loading table inet {config.options.table}")
            daemon.start()
            for warning in doctor_warnings(LibNft(), config):
                log.warning("%s", warning)
            hooks = Hooks(
                daemon,
                nflog.counters,
                lambda: reload_config(path, options, daemon, resolver),
                spa=spa,
                only_ipv4=options.only_ipv4,
                names=names,
                resolver=trusted,
                systemd=systemd,
                metrics=metrics,
                readiness=readiness,
            )
            serve(
                daemon,
                nflog,
                spa=spa,
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
        for closing in (
            spa,
            metrics,
            table_events,
            trusted,
            host_addresses,
            commands,
            names,
            audit,
        ):
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
