"""`knocknft status`: whether the gate is in place, the doors, the grants and bans in the
kernel's sets (admin.health, admin.status), or the daemon's counters (--stats)."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from knocknft.admin import cli_common
from knocknft.admin.cli_common import (
    EXIT_FAILURE,
    EXIT_INVALID,
    ConfigOption,
    config_or_defaults,
    exit_on_error,
    option_seconds,
    options_for,
    warn,
)
from knocknft.admin.confirmfiles import boottime
from knocknft.admin.health import EXIT_CODES_HELP, check_health
from knocknft.admin.status import doors_json, format_bans, format_doors, format_health, format_table
from knocknft.config import DEFAULT_CONFIG_PATH, HostInterfaces
from knocknft.core.bans import Ban
from knocknft.core.grants import Grant
from knocknft.errors import ConfigError, KnocknftError, TableMissing, UsageError
from knocknft.netlink.base import interface_names
from knocknft.nft.queries import doctor_warnings, read_bans, read_grants

# Merged into knocknft.admin.cli.app, which lists every command in one order.
commands = typer.Typer()


@commands.command(
    epilog="Examples: knocknft status; knocknft status --json | jq '.grants[].address'; "
    "knocknft status --watch 2; knocknft status >/dev/null || alert; knocknft status --stats"
    "\n\n" + EXIT_CODES_HELP
)
def status(  # keyword-only, as typer passes them by name
    *,
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    as_json: Annotated[
        bool, typer.Option("--json", help="Machine-readable output (stable).")
    ] = False,
    show_sequences: Annotated[
        bool,
        typer.Option(
            "--show-sequences",
            help="Show each door's knock sequence, which is otherwise hidden: it is the secret.",
        ),
    ] = False,
    watch: Annotated[
        str | None,
        typer.Option(
            "--watch",
            "-w",
            help="Show it again every SECONDS (e.g. 2, 10s) until Ctrl-C, which exits 0; "
            "with --stats too.",
            metavar="SECONDS",
        ),
    ] = None,
    stats: Annotated[
        bool,
        typer.Option(
            "--stats",
            help="Instead of the grants, the running daemon's counters, from its stats.json; "
            "exits 1 when the daemon is not running or its stats are stale.",
        ),
    ] = False,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            help="The daemon's state directory (stats.json, a pending confirmation); "
            "overrides options.state_dir.",
            metavar="DIR",
        ),
    ] = None,
) -> None:
    """Whether the gate is in place, the doors, the open grants and the banned sources.

    The gate is in place when table inet knocknft is loaded, a daemon runs for it, every
    configured interface exists and no `apply --confirm` waits to be confirmed; the exit status
    says which (below), so scripts and monitoring can test it. Doors are listed with what they
    do; their sequences only with --show-sequences. Grants and bans are read from the kernel's
    sets, daemon or not.

    --json gives a stable object, also when the table is not loaded: {"table", "effective",
    "health": {"in_place", "exit", "table_loaded", "daemon_running", "daemon",
    "interfaces_missing", "late_interfaces_missing", "confirm", "problems"}, "doors": [...],
    "grants": [{"address", "family", "door", "service", "port", "protocol", "timeout",
    "expires_in"}], "bans": [{"address", "family", "door", "deny", "timeout", "expires_in"}]},
    times in seconds. With --watch, one such object per line, each time.

    With --stats: the daemon's counters (knocks, stages, opens, timeouts, evictions, lost NFLOG
    messages, failed commands...) as it last wrote them (every 5s), and whether it is running.
    --json then gives {"state": "running"|"stale"|"stopped"|"absent", "running", "reason",
    "path", "age", "stats": {...} or null}.
    """
    every = None if watch is None else max(1, option_seconds_or_exit(watch, "--watch"))

    def show() -> int:
        if stats:
            return _daemon_stats(config, state_dir, as_json, compact=every is not None)
        return _show_status(
            config,
            state_dir,
            as_json=as_json,
            show_sequences=show_sequences,
            compact=every is not None,
        )

    if every is None:
        raise typer.Exit(show())
    watch_until_interrupted(show, every, clear=not as_json and sys.stdout.isatty())


def option_seconds_or_exit(text: str, option: str) -> int:
    with exit_on_error():
        return option_seconds(text, option)
    raise AssertionError("unreachable")  # exit_on_error raised typer.Exit


def watch_until_interrupted(show: Callable[[], int], every: int, *, clear: bool) -> None:
    """`show` every `every` seconds until Ctrl-C (or SIGTERM), which ends it with exit 0."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while True:
            if clear:
                typer.echo("\033[H\033[2J", nl=False)  # as clear(1) does
            show()
            time.sleep(every)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _show_status(
    config: Path, state_dir: Path | None, *, as_json: bool, show_sequences: bool, compact: bool
) -> int:
    with exit_on_error(), _json_on_error(as_json):
        cfg = config_or_defaults(config)
        table = cfg.options.table
        nft = cli_common.nft_factory()
        grants: list[Grant]
        bans: list[Ban]
        try:
            grants, bans = read_grants(nft, table), read_bans(nft, table)
            loaded = True
        except TableMissing:
            grants, bans, loaded = [], [], False
        blocked = doctor_warnings(nft, cfg) if loaded and cfg.doors else []
        health = check_health(
            cfg,
            loaded,
            HostInterfaces(interface_names()),
            state_dir or cfg.options.state_dir,
        )
    now = boottime()
    if as_json:
        report = {
            "table": table,
            "effective": loaded and not blocked,
            "health": health.to_json(now),
            "doors": doors_json(cfg, show_sequences),
            "grants": [g.to_json() for g in grants],
            "bans": [b.to_json() for b in bans],
        }
        typer.echo(json.dumps(report, indent=None if compact else 2))
    else:
        typer.echo(
            format_health(health, now)
            + "\n"
            + format_doors(cfg, show_sequences)
            + "\n"
            + format_table(grants)
            + format_bans(bans),
            nl=False,
        )
    for warning in blocked:
        warn(f"grants are not effective: {warning}")
    return health.exit_code()


def _daemon_stats(config: Path, state_dir: Path | None, as_json: bool, *, compact: bool) -> int:
    from knocknft.daemon.stats import format_status, read_status

    with exit_on_error():
        found = read_status(state_dir or options_for(config).state_dir)
    if as_json:
        typer.echo(json.dumps(found.to_json(), indent=None if compact else 2))
    else:
        typer.echo(format_status(found), nl=False)
    return 0 if found.running else EXIT_FAILURE


@contextmanager
def _json_on_error(as_json: bool) -> Iterator[None]:
    """Under --json a failure is a JSON object on stdout too, {"error", "exit"}, for the script
    that parses it; the message goes to stderr as for every command (exit_on_error)."""
    try:
        yield
    except KnocknftError as exc:
        if as_json:
            code = EXIT_INVALID if isinstance(exc, ConfigError | UsageError) else EXIT_FAILURE
            typer.echo(json.dumps({"error": str(exc), "exit": code}))
        raise
