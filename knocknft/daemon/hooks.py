"""What the loop calls back while `knocknft run` runs: readiness, reloads and the periodic stats,
told to systemd, the metrics endpoint and the log; and the sources' counters for stats.json."""

from __future__ import annotations

import logging
from collections.abc import Callable

from knocknft import __version__
from knocknft.config import Config
from knocknft.daemon.detach import Readiness
from knocknft.daemon.executor import Daemon
from knocknft.daemon.metrics import MetricsServer
from knocknft.daemon.names import NameCache
from knocknft.daemon.notify import Notifier, OpenGrants, status_line
from knocknft.daemon.spa import SpaService
from knocknft.daemon.stats import NO_SPA_STATS, STATS_INTERVAL, DaemonStats, SourceStats
from knocknft.daemon.trusted import ResolverThread
from knocknft.netlink.nflog_decoder import NflogCounters

log = logging.getLogger("knocknft")


def source_stats(
    nflog: NflogCounters, names: NameCache | None, spa: SpaService | None = None
) -> SourceStats:
    """The NFLOG readers' and the name cache's counters, for stats.json beside the daemon's."""
    return {
        "nflog_messages": nflog.messages,
        "nflog_lost": nflog.lost,
        "nflog_overruns": nflog.overruns,
        "nflog_malformed": sum(nflog.malformed.values()),
        "nflog_not_knocks": sum(nflog.non_knock.values()),
        "lookups_dropped": names.dropped if names is not None else 0,
        **(spa.stats() if spa is not None else NO_SPA_STATS),
    }


class Hooks:
    """The loop's callbacks for one daemon; `load` reads the config anew for a reload."""

    def __init__(
        self,
        daemon: Daemon,
        nflog_counters: NflogCounters,
        load: Callable[[], Config],
        *,
        spa: SpaService,
        only_ipv4: bool,
        names: NameCache | None,
        resolver: ResolverThread,
        systemd: Notifier,
        metrics: MetricsServer | None,
        readiness: Readiness | None,
    ) -> None:
        self.daemon = daemon
        self.nflog_counters = nflog_counters
        self.load = load
        self.spa = spa
        self.only_ipv4 = only_ipv4
        self.names = names
        self.resolver = resolver
        self.systemd = systemd
        self.metrics = metrics
        self.readiness = readiness
        self.open_grants = OpenGrants(daemon.nft, lambda: daemon.config.options.table)
        self.reload_failed = False
        self.lost_reported = 0
        self.spa_lost_reported = 0

    def counters(self) -> SourceStats:
        return source_stats(self.nflog_counters, self.names, self.spa)

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
            "; IPv6 knocks ignored (-4)" if self.only_ipv4 else "",
        )
        if self.readiness is not None:
            self.readiness.ready()
        if self.systemd.enabled:
            self.systemd.ready(self.status(self.daemon.stats(self.counters()), fresh=True))

    def reload(self) -> Config:
        self.systemd.reloading()
        return self.load()

    def reloaded(self, ok: bool) -> None:
        self.reload_failed = not ok
        if ok:
            self.resolver.want(self.daemon.config.options.always_allow_names)
        # READY=1 either way: the daemon runs, on the new config or on the old one.
        if self.systemd.enabled:
            self.systemd.ready(self.status(self.daemon.stats(self.counters()), fresh=True))

    def stats_ticked(self, stats: DaemonStats) -> None:
        # Packets the kernel logged but could not queue to us: a knock sequence may break, an
        # SPA client may have to send again.
        options = self.daemon.config.options
        self.lost_reported = report_lost(
            "knock", options.nflog_group, self.nflog_counters.lost, self.lost_reported
        )
        self.spa_lost_reported = report_lost(
            "SPA", options.spa_nflog_group, stats["spa_packets_lost"], self.spa_lost_reported
        )
        if self.metrics is not None:
            self.metrics.publish(stats)
        if self.systemd.enabled:
            self.systemd.status(self.status(stats))


def report_lost(what: str, group: int, lost: int, reported: int) -> int:
    """A warning when more `what` packets were lost since the last one; the count reported."""
    if lost > reported:
        log.warning(
            "NFLOG group %d: %d %s packet(s) lost in the last %gs (%d in all): "
            "the daemon fell behind; see `knocknft status --stats`",
            group,
            lost - reported,
            what,
            STATS_INTERVAL,
            lost,
        )
    return max(lost, reported)
