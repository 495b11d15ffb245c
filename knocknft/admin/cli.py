"""The `knocknft` command line. Commands are thin: they parse, call `operations`, and map
knocknft's errors to a message on stderr and an exit code scripts can rely on.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from knocknft import __version__
from knocknft.admin.confirm import Armed, Pending, StateDir, arm, clock_text, refuse_if_pending
from knocknft.admin.confirm import confirm as confirm_change
from knocknft.config import (
    DEFAULT_CONFIG_PATH,
    DEFAULT_STATE_DIR,
    Config,
    Invalid,
    Options,
    load_config,
    parse_duration,
    read_config_text,
)
from knocknft.core.grants import format_seconds, format_table
from knocknft.core.ruleset import render_ruleset
from knocknft.errors import ConfigError, KnocknftError, NftError, UsageError
from knocknft.files import write_atomic
from knocknft.knockd.grammar import read_knockd_conf
from knocknft.knockd.writer import import_knockd
from knocknft.nft.lastgood import last_good_path, load_last_good
from knocknft.nft.libnft import LibNft, NftSnapshots
from knocknft.nft.operations import (
    apply_config,
    close_grants,
    find_door,
    open_grant,
    parse_client_address,
)
from knocknft.nft.queries import read_grants

EXIT_OK = 0
EXIT_FAILURE = 1  # the kernel refused, or another runtime failure
EXIT_INVALID = 2  # the config or a command-line argument is invalid; nothing was changed

EXIT_CODES_HELP = (
    "Exit status: 0 success; 1 the kernel (libnftables) refused or another runtime failure; "
    "2 invalid config or arguments, nothing changed."
)

app = typer.Typer(
    name="knocknft",
    help=(
        "Port knocking for nftables, the successor to knockd.\n\n"
        "knocknft keeps services such as SSH dropped by its own nft table (inet knocknft) until a "
        "client knocks the right sequence of ports; the client's address is then added to a "
        "timed allowlist set, which the kernel expires by itself.\n\n" + EXIT_CODES_HELP
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        help="The YAML config file.",
        show_default=True,
        metavar="FILE",
    ),
]
StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Where a pending confirmation and the last-known-good copy of the table (for "
        "`knocknft guard`) are kept; overrides options.state_dir.",
        metavar="DIR",
    ),
]

# Tests swap this for a factory that targets a fake or a namespace.
nft_factory: Callable[[], NftSnapshots] = LibNft


def _fail(code: int, message: str) -> NoReturn:
    typer.echo(f"knocknft: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def _errors() -> Iterator[None]:
    """Map knocknft's error tree to messages and exit codes, in one place for every command."""
    try:
        yield
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(f"error: {problem}", err=True)
        n = len(exc.problems)
        _fail(EXIT_INVALID, f"{n} error{'s' if n != 1 else ''} in the config; nothing was changed")
    except UsageError as exc:
        _fail(EXIT_INVALID, str(exc))
    except NftError as exc:
        _fail(EXIT_FAILURE, f"nft: {exc}")
    except KnocknftError as exc:
        _fail(EXIT_FAILURE, str(exc))


def _load(path: Path, show_warnings: bool = True) -> Config:
    loaded = load_config(path)
    if show_warnings:
        for problem in loaded.warnings:
            typer.echo(f"warning: {problem}", err=True)
    return loaded.config


def _version(value: bool) -> None:
    if value:
        typer.echo(f"knocknft {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", help="Print the version and exit.", callback=_version, is_eager=True
        ),
    ] = False,
) -> None:
    pass


@app.command(epilog="Example: knocknft check -c /etc/knocknft/config.yaml")
def check(config: ConfigOption = DEFAULT_CONFIG_PATH) -> None:
    """Validate the config without touching the kernel.

    Prints every error with file, line and key, and how to fix it; warns about weak sequences
    (fewer than 3 steps, ascending ports, a single protocol, a prefix of another door's).
    Exits 0 if the config is valid (warnings included), 2 if not.
    """
    with _errors():
        cfg = _load(config)
    ports = sorted({str(p) for d in cfg.doors for p in d.knock_ports})
    typer.echo(
        f"{config}: OK: {len(cfg.doors)} door(s), knock ports {', '.join(ports)}; "
        f"protected: {', '.join(map(str, sorted(cfg.protected))) or 'none'}"
    )


@app.command(
    epilog=(
        "Examples: knocknft apply; knocknft apply --dry-run | less; "
        "knocknft apply --confirm 2m, then from a new session: knocknft confirm"
    )
)
def apply(
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Print the nft script and load nothing.")
    ] = False,
    confirm: Annotated[
        str | None,
        typer.Option(
            "--confirm",
            help="Roll the table back to how it is now after DURATION (e.g. 60, 2m) unless "
            "`knocknft confirm` runs first, so a change that locks you out undoes itself. "
            "Grants are kept both ways. Again while one is pending: the timer restarts, the "
            "rollback point stays.",
            metavar="DURATION",
        ),
    ] = None,
    state_dir: StateDirOption = None,
) -> None:
    """Install or replace knocknft's table (inet knocknft) in one transaction.

    Only that table is touched. The allowlist sets and every open grant in them survive a
    re-apply, with their remaining time. If anything fails, nothing changes. While an
    `apply --confirm` is pending, a plain apply is refused.

    The script the kernel accepted is kept as STATE_DIR/last-good.nft (0600), which
    `knocknft guard` loads at boot. If it cannot be kept, a warning says so; the table is
    loaded all the same and the exit status is 0.
    """
    armed: Armed | None = None
    with _errors():
        cfg = _load(config)
        if state_dir is not None:
            cfg = dataclasses.replace(
                cfg, options=dataclasses.replace(cfg.options, state_dir=state_dir)
            )
        if dry_run:
            if confirm is not None:
                raise UsageError("--dry-run loads nothing, so there is nothing to --confirm")
            typer.echo(render_ruleset(cfg), nl=False)
            return
        state = StateDir(state_dir or cfg.options.state_dir)
        if confirm is None:
            _warn_stale(refuse_if_pending(state))
            result = apply_config(nft_factory(), cfg)
        else:
            seconds = _seconds(confirm, "--confirm")
            armed = arm(nft_factory(), cfg, seconds, state)
            _warn_stale(armed.stale)
            result = armed.applied
    verb = "replaced" if result.replaced else "installed"
    typer.echo(
        f"{verb} table inet {cfg.options.table}: {len(cfg.doors)} door(s), "
        f"{result.grants_kept} open grant(s) kept"
    )
    if result.save_error is not None:
        typer.echo(
            f"warning: not kept for the boot guard: {result.save_error}; after a reboot "
            "`knocknft guard` would load an older table, or none",
            err=True,
        )
    if armed is not None:
        _tell_armed(armed, state)


def _warn_stale(stale: Pending | None) -> None:
    if stale is not None:
        typer.echo(
            "warning: dropped a pending confirmation whose rollback watcher is gone "
            "(killed, or the machine restarted)",
            err=True,
        )


def _tell_armed(armed: Armed, state: StateDir) -> None:
    p = armed.pending
    if armed.extended:
        typer.echo(
            "a confirmation was already pending: the rollback still returns to the table as it "
            f"was at {clock_text(p.saved_at)}, before the first unconfirmed apply"
        )
    if p.had_table:
        what = (
            f"table inet {p.table} returns to how it was at {clock_text(p.saved_at)} "
            f"(saved in {state.rollback}), grants kept"
        )
    else:
        what = (
            f"there was no table inet {p.table} before, so the rollback DELETES it, "
            "with every grant in it"
        )
    typer.echo(
        f"rolling back in {format_seconds(p.seconds)} (at {clock_text(p.due_at)}) unless "
        f"`knocknft confirm` runs: {what}"
    )
    typer.echo(f"the rollback watcher is pid {p.watcher}; it logs to {state.log}")


@app.command(
    "confirm",
    epilog="Example: knocknft apply --confirm 2m; ssh in anew to check; knocknft confirm",
)
def confirm_(config: ConfigOption = DEFAULT_CONFIG_PATH, state_dir: StateDirOption = None) -> None:
    """Keep what `knocknft apply --confirm` applied: cancel its rollback.

    Exits 0 when a rollback was cancelled, 1 when none was pending (the message says when the
    last one was rolled back, if it was).
    """
    with _errors():
        done = confirm_change(StateDir(state_dir or _options(config).state_dir))
    p = done.pending
    typer.echo(
        f"confirmed: table inet {p.table} stays as applied; the rollback due at "
        f"{clock_text(p.due_at)} is cancelled"
    )
    if not done.watcher_was_running:
        typer.echo(
            f"note: its watcher (pid {p.watcher}) was no longer running: no rollback was coming",
            err=True,
        )


GUARD_EPILOG = (
    "At boot this runs from knocknft-guard.service, before network-pre.target and before "
    "knocknft.service (packaging/systemd/). By hand: knocknft guard; "
    "knocknft guard --state-dir /srv/knocknft.\n\n"
    "Exit status: 0 the table is loaded, or nothing was saved yet (a warning says so, nothing "
    "changes); 1 the saved file cannot be read, is not one knocknft saved, or the kernel "
    "refused it; 2 invalid arguments."
)


@app.command(epilog=GUARD_EPILOG)
def guard(
    state_dir: Annotated[
        Path,
        typer.Option(
            "--state-dir",
            help="Where apply and the daemon keep last-good.nft: the same directory as "
            "options.state_dir.",
            show_default=True,
            metavar="DIR",
        ),
    ] = DEFAULT_STATE_DIR,
) -> None:
    """Load the last-known-good table, so the protected services are shut from boot on.

    Loads DIR/last-good.nft, the script of the last successful `knocknft apply` or daemon
    start or reload, in one transaction. Run early at boot, before any network is up, it keeps
    the protected services dropped even if the daemon then cannot start: fail closed, where a
    knockd that failed to start left the ports open (knockd issue #51). The daemon, once
    running, replaces the table with its current config.

    The table is loaded as `apply` loads it: if it is already there, open grants survive with
    their remaining time. After `nft flush ruleset` the grants are gone, as the table was;
    the guard brings back the table, closed.

    The config is not read, so a broken config cannot keep the guard from closing the doors.
    A file that is not a table knocknft saved (every command must name one inet table) is
    refused.
    """
    path = last_good_path(state_dir)
    try:
        with _errors():
            guarded = load_last_good(nft_factory(), state_dir)
    except OSError as exc:
        _fail(EXIT_FAILURE, f"cannot read {path}: {exc.strerror or exc}")
    if guarded.table is None:
        typer.echo(
            f"warning: nothing to load: {path} does not exist yet (`knocknft apply` and the "
            "daemon save it); nothing changed, the protected services are not guarded",
            err=True,
        )
        return
    if guarded.replaced:
        done = f"table inet {guarded.table} reloaded, {guarded.grants_kept} open grant(s) kept"
    else:
        done = f"table inet {guarded.table} installed: the protected services are closed"
    typer.echo(f"loaded {path}: {done}")


@app.command(
    epilog="Examples: knocknft status; knocknft status --json | jq '.grants[].address'; "
    "knocknft status --stats"
)
def status(
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    as_json: Annotated[
        bool, typer.Option("--json", help="Machine-readable output (stable).")
    ] = False,
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
            help="With --stats: the daemon's state directory; overrides options.state_dir.",
            metavar="DIR",
        ),
    ] = None,
) -> None:
    """List the open grants: address, door, service, time left.

    Reads the kernel's sets, so it works with or without the daemon. The --json form is a
    stable object {"table": ..., "grants": [{"address", "family", "door", "service", "port",
    "protocol", "timeout", "expires_in"}]} with times in seconds.

    With --stats: the daemon's counters (knocks, stages, opens, timeouts, evictions, lost NFLOG
    messages, failed commands...) as it last wrote them (every 5s), and whether it is running.
    --json then gives {"state": "running"|"stale"|"stopped"|"absent", "running", "reason",
    "path", "age", "stats": {...} or null}.
    """
    if stats:
        _daemon_stats(config, state_dir, as_json)
        return
    with _errors():
        table = _table_name(config)
        grants = read_grants(nft_factory(), table)
    if as_json:
        typer.echo(json.dumps({"table": table, "grants": [g.to_json() for g in grants]}, indent=2))
    else:
        typer.echo(format_table(grants), nl=False)


def _daemon_stats(config: Path, state_dir: Path | None, as_json: bool) -> None:
    from knocknft.daemon.stats import format_status, read_status

    with _errors():
        found = read_status(state_dir or _options(config).state_dir)
    if as_json:
        typer.echo(json.dumps(found.to_json(), indent=2))
    else:
        typer.echo(format_status(found), nl=False)
    if not found.running:
        raise typer.Exit(EXIT_FAILURE)


def _options(config: Path) -> Options:
    """The options to read: from the config when there is one; the defaults otherwise."""
    if config == DEFAULT_CONFIG_PATH and not config.exists():
        return Options()
    return _load(config, show_warnings=False).options


def _table_name(config: Path) -> str:
    return _options(config).table


def _duration(text: str | None) -> int | None:
    return None if text is None else _seconds(text, "--for")


def _seconds(text: str, option: str) -> int:
    try:
        return parse_duration(text)
    except Invalid as exc:
        raise UsageError(f"{option}: {exc.message} ({exc.hint})") from None


@app.command("open", epilog="Example: knocknft open 198.18.0.2 --door ssh --for 10m")
def open_(
    address: Annotated[
        str, typer.Argument(help="The client's IPv4 or IPv6 address.", metavar="ADDRESS")
    ],
    door: Annotated[
        str, typer.Option("--door", "-d", help="The door whose services to grant.", metavar="NAME")
    ],
    for_: Annotated[
        str | None,
        typer.Option(
            "--for",
            "-t",
            help="How long, e.g. 30s, 5m, 1h. Default: the door's open_for.",
            metavar="DURATION",
        ),
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG_PATH,
) -> None:
    """Grant ADDRESS the services of a door by hand, as a completed knock would.

    An existing grant is refreshed to the new duration. The kernel expires it by itself.
    """
    with _errors():
        cfg = _load(config, show_warnings=False)
        client = parse_client_address(address)
        grants = open_grant(nft_factory(), cfg, client, find_door(cfg, door), _duration(for_))
    for g in grants:
        typer.echo(
            f"opened {g.service} for {g.address} (door {g.door}) for {format_seconds(g.timeout)}"
        )


@app.command(epilog="Example: knocknft close 2001:db8::2 --door ssh")
def close(
    address: Annotated[
        str, typer.Argument(help="The client's IPv4 or IPv6 address.", metavar="ADDRESS")
    ],
    door: Annotated[
        str | None,
        typer.Option("--door", "-d", help="Only this door's grants. Default: all.", metavar="NAME"),
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG_PATH,
) -> None:
    """Revoke ADDRESS's grants now; new connections are dropped, established ones stay.

    Exits 0 also when nothing was open, so it is safe in scripts.
    """
    with _errors():
        table = _table_name(config)
        client = parse_client_address(address)
        revoked = close_grants(nft_factory(), table, client, door)
    if not revoked:
        typer.echo(f"nothing open for {client}" + (f" by door {door}" if door else ""))
    for g in revoked:
        typer.echo(f"closed {g.service} for {g.address} (door {g.door})")


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


@app.command(epilog=RUN_EPILOG)
def run(  # one parameter per knockd flag; keyword-only since typer passes them by name
    *,
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    interface: Annotated[
        list[str] | None,
        typer.Option(
            "--interface",
            "-i",
            help="Only knocks arriving on this interface count (repeatable); overrides "
            "options.interfaces (knockd.conf: Interface). Default: every interface.",
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
            help="Ignore IPv6 knocks: they are still dropped by the table, but never open a "
            "door (counted as ipv6_ignored in stats.json).",
        ),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also log broken sequences and evictions.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", "-D", help="Also log every knock packet.")
    ] = False,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            help="Where pending stop commands and stats are kept; overrides options.state_dir.",
            metavar="DIR",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", help="Print the version and exit.", callback=_version, is_eager=True
        ),
    ] = False,
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
    with _errors():
        code = run_daemon(config, options)
    raise typer.Exit(code)


@app.command(
    "import",
    epilog=(
        "Example: knocknft import /etc/knockd.conf -o /etc/knocknft/config.yaml && "
        "knocknft check -c /etc/knocknft/config.yaml"
    ),
)
def import_(
    file: Annotated[Path, typer.Argument(help="The knockd.conf to read.", metavar="FILE")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the YAML here, atomically (a new file is made private: 0600). "
            "Default: standard output.",
            metavar="OUT",
        ),
    ] = None,
) -> None:
    """Turn a knockd.conf into a knocknft YAML config that does what knockd did.

    Reads FILE with knockd's grammar (case-insensitive keys, the aliases Command, Timeout and
    Command_6, every [options] directive) and writes one door per section, with comments naming
    the source line of each door and command.

    iptables, ip6tables and nft commands that accept the knocker (%IP%) on a port become native
    grants: with the matching delete as stop_command, `open` for cmd_timeout; deleted by
    another door (openSSH/closeSSH), `open` for 1h and a `close` door. Every other command is
    kept as written, and knocknft runs it as knockd did; each one is listed on stderr with its
    line, and in the output.

    Exits 0 when the YAML was written, 2 when FILE is not a valid knockd.conf (every error with
    its line; nothing is written).
    """
    with _errors():
        conf = read_knockd_conf(
            read_config_text(file), str(file), read_file=_one_time_file_or_nothing
        )
        result = import_knockd(conf, str(file))
    for problem in result.not_mapped:
        typer.echo(f"not mapped: {problem}", err=True)
    if output is None:
        typer.echo(result.yaml, nl=False)
        return
    try:
        write_atomic(output, result.yaml)
    except OSError as exc:
        _fail(EXIT_FAILURE, f"cannot write {output}: {exc.strerror or exc}")
    typer.echo(f"wrote {output}: {len(conf.config.doors)} door(s)", err=True)


def _one_time_file_or_nothing(path: Path) -> str:
    # An import may run away from the server; `knocknft check` there reads the file.
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""


def main() -> None:
    app(prog_name="knocknft")


if __name__ == "__main__":
    main()
