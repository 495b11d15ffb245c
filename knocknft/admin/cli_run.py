"""`knocknft run`: the knock daemon, with every knockd flag."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from knocknft.admin.cli_common import EXIT_CODES_HELP, ConfigOption, VersionOption, exit_on_error
from knocknft.config import DEFAULT_CONFIG_PATH

# Merged into knocknft.admin.cli.app, which lists every command in one order.
commands = typer.Typer()


RUN_EPILOG = (
    "knockd equivalence: every knockd flag is accepted with knockd's meaning, so a knockd unit "
    "or init script works with only the program swapped (ExecStart=knocknft run $KNOCKD_OPTS). "
    "Without -c, /etc/knocknft/config.yaml is read, or /etc/knockd.conf if only that exists. "
    "Differences: -i may be repeated and defaults to every interface (knockd: eth0 only); -d "
    "returns only once the daemon listens (exit 0) or has failed (exit 1, with its error); "
    "-p and PidFile are used only with -d, as in knockd.\n\n"
    "Examples: knocknft run; knocknft run -c /etc/knockd.conf -i eth0 -v; "
    "knocknft run -d -p /run/knocknft.pid -g /var/log/knocknft.log. "
    "Reload: kill -HUP PID (a bad config is logged and the old one keeps running). "
    "Stop: kill -TERM PID.\n\n" + EXIT_CODES_HELP
)


@commands.command(epilog=RUN_EPILOG)
def run(  # one parameter per knockd flag; keyword-only since typer passes them by name
    *,
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    interface: Annotated[
        list[str] | None,
        typer.Option(
            "--interface",
            "-i",
            help="Only knocks arriving on this interface count (repeatable); overrides "
            "options.interfaces (knockd.conf: Interface). Default: every interface. One the "
            "host does not have is refused, unless options.late_interfaces lists it.",
            metavar="IFACE",
        ),
    ] = None,
    daemon: Annotated[
        bool,
        typer.Option(
            "--daemon",
            "-d",
            help="Detach into the background (double fork, new session, stdio on /dev/null) "
            "and write the pidfile. Returns 0 once the daemon listens, 1 with its error if it "
            "cannot start. Log with -g or syslog: stderr is gone.",
        ),
    ] = False,
    pidfile: Annotated[
        Path | None,
        typer.Option(
            "--pidfile",
            "-p",
            help="With -d: the pidfile, removed on a clean exit. Default: knockd.conf's "
            "PidFile, else /run/knocknft.pid.",
            metavar="FILE",
        ),
    ] = None,
    logfile: Annotated[
        Path | None,
        typer.Option(
            "--logfile",
            "-g",
            help="Also log to FILE; overrides options.log_file (knockd.conf: LogFile).",
            metavar="FILE",
        ),
    ] = None,
    lookup: Annotated[
        bool,
        typer.Option(
            "--lookup",
            "-l",
            help="Show reverse DNS names in log lines as 'ADDR (NAME)'. Lookups run in the "
            "background and never delay a knock: a name appears once it is known. Names are "
            "chosen by whoever controls the reverse zone; commands always get the address.",
        ),
    ] = False,
    only_ipv4: Annotated[
        bool,
        typer.Option(
            "--only-ip-v4",
            "-4",
            help="Ignore IPv6 knocks and SPA requests: they are still dropped by the table, but "
            "never open a door (counted as ipv6_ignored, or spa_rejected_not_allowed, in "
            "stats.json).",
        ),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Also log what happens to attempts: broken sequences, evictions. Stages, "
            "opens, grants, grant ends and commands are always logged.",
        ),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            "-D",
            help="All of -v, plus every knock packet and the kernel's announcements of our "
            "table's grants (the log then shows the sequence).",
        ),
    ] = False,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            help="Where pending stop commands and stats are kept; overrides options.state_dir.",
            metavar="DIR",
        ),
    ] = None,
    version: VersionOption = False,
) -> None:
    """Run the knock daemon: in the foreground (systemd style), or detached with -d.

    Applies the table as `apply` does (grants are kept), binds the NFLOG group, and turns
    completed knock sequences into grants: the knocker's address enters the allowlist set with
    the door's open_for as timeout, and the door's start_command/stop_command run as under knockd.
    Logs a ready line ("listening on NFLOG group N") once listening. SIGHUP reloads the config;
    SIGTERM or SIGINT stop. If another tool deletes the table (nft flush ruleset), the daemon
    applies it again at once, with the grants that were in it.

    -c also takes a knockd.conf: its commands are then the only effect, as under knockd.
    """
    from knocknft.daemon.run import RunOptions, run_daemon

    options = RunOptions(
        interfaces=tuple(interface or ()),
        verbose=verbose,
        debug=debug,
        state_dir=state_dir,
        log_file=logfile,
        daemon=daemon,
        pid_file=pidfile,
        lookup=lookup,
        only_ipv4=only_ipv4,
    )
    with exit_on_error():
        code = run_daemon(config, options)
    raise typer.Exit(code)
