"""`knocknft run`: wires the config, the nft adapter, the NFLOG socket and the daemon together."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from knocknft import __version__
from knocknft.commands import ShellRunner
from knocknft.config import Config, parse_config, read_config_text
from knocknft.daemon import Daemon, pending_path, serve
from knocknft.knockd_conf import looks_like_knockd_conf, parse_knockd_conf
from knocknft.logs import setup_logging
from knocknft.nflog import NflogSocket
from knocknft.nft import LibNft
from knocknft.pending import PendingStops

log = logging.getLogger("knocknft")


def load_for_run(
    path: Path, interfaces: tuple[str, ...], state_dir: Path | None = None
) -> tuple[Config, bool]:
    """The config to run, and whether grants are native (YAML) or commands only (knockd.conf)."""
    text = read_config_text(path)
    native = not looks_like_knockd_conf(text)
    if native:
        config = parse_config(text, str(path)).config
    else:
        config = parse_knockd_conf(text, str(path))[0]
    if state_dir is not None:
        config = dataclasses.replace(
            config, options=dataclasses.replace(config.options, state_dir=state_dir)
        )
    if interfaces:
        options = dataclasses.replace(config.options, interfaces=interfaces)
        config = dataclasses.replace(config, options=options)
    return config, native


def run_daemon(
    path: Path,
    interfaces: tuple[str, ...],
    *,
    verbose: bool,
    debug: bool,
    state_dir: Path | None = None,
) -> int:
    config, native = load_for_run(path, interfaces, state_dir)
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
            return load_for_run(path, interfaces, state_dir)[0]

        try:
            serve(daemon, nflog, load=reload, source_stats=source_stats, on_ready=ready)
        finally:
            runner.close()
    log.info("stopped; NFLOG group %d unbound, table and grants left in place", group)
    return 0
