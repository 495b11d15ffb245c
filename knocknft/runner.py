"""`knocknft run`: wires the config, the nft adapter, the NFLOG socket and the daemon together."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from knocknft import __version__
from knocknft.commands import ShellRunner
from knocknft.config import Config, load_config
from knocknft.daemon import Daemon, pending_path, serve
from knocknft.logs import setup_logging
from knocknft.nflog import NflogSocket
from knocknft.nft import LibNft
from knocknft.pending import PendingStops

log = logging.getLogger("knocknft")


def load_for_run(path: Path, interfaces: tuple[str, ...]) -> tuple[Config, bool]:
    """The config to run, and whether grants are native (YAML) or commands only (knockd.conf)."""
    config = load_config(path).config
    if interfaces:
        options = dataclasses.replace(config.options, interfaces=interfaces)
        config = dataclasses.replace(config, options=options)
    return config, True


def run_daemon(path: Path, interfaces: tuple[str, ...], verbose: bool, debug: bool) -> int:
    config, native = load_for_run(path, interfaces)
    setup_logging(config.options, verbose=verbose, debug=debug)
    runner = ShellRunner()
    daemon = Daemon(
        config,
        LibNft(),
        runner,
        PendingStops(pending_path(config)),
        native_grants=native,
    )
    daemon.start()
    group = config.options.nflog_group
    with NflogSocket(group) as nflog:

        def ready() -> None:
            log.info(
                "knocknft %s: listening on NFLOG group %d (table inet %s, %d door(s))",
                __version__,
                group,
                config.options.table,
                len(config.doors),
            )

        def source_stats() -> dict[str, object]:
            c = nflog.counters
            return {
                "nflog_messages": c.messages,
                "nflog_lost": c.lost,
                "nflog_overruns": c.overruns,
                "nflog_malformed": sum(c.malformed.values()),
                "nflog_not_knocks": sum(c.non_knock.values()),
            }

        def reload() -> Config:
            return load_for_run(path, interfaces)[0]

        try:
            serve(daemon, nflog, load=reload, source_stats=source_stats, on_ready=ready)
        finally:
            runner.close()
    log.info("stopped; NFLOG group %d unbound, table and grants left in place", group)
    return 0
