"""`knocknft check`, `apply`, `confirm` and `guard`: the table, from the config to the kernel."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Annotated

import typer

from knocknft.admin import cli_common
from knocknft.admin.cli_common import (
    EXIT_FAILURE,
    ConfigOption,
    StateDirOption,
    exit_on_error,
    fail,
    load,
    option_seconds,
    options_for,
    warn,
)
from knocknft.admin.confirm import Armed, arm, clock_text, refuse_if_pending
from knocknft.admin.confirm import confirm as confirm_change
from knocknft.admin.confirmfiles import Pending, StateDir
from knocknft.config import (
    DEFAULT_CONFIG_PATH,
    DEFAULT_STATE_DIR,
    HostInterfaces,
    format_seconds,
)
from knocknft.core.lockout import ssh_lockout
from knocknft.core.ruleset import render_ruleset
from knocknft.daemon.tablelock import refuse_if_daemon_runs
from knocknft.daemon.trusted import NameResolver, resolve_config
from knocknft.errors import UsageError
from knocknft.files import check_state_dir
from knocknft.netlink.base import interface_names
from knocknft.nft.lastgood import last_good_path, load_last_good
from knocknft.nft.operations import apply_config
from knocknft.nft.queries import doctor_warnings

# Merged into knocknft.admin.cli.app, which lists every command in one order.
commands = typer.Typer()


@commands.command(epilog="Example: knocknft check -c /etc/knocknft/config.yaml")
def check(
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    other_host: Annotated[
        bool,
        typer.Option(
            "--other-host",
            help="The config is for another machine: an interface this one lacks is a "
            "warning, not an error.",
        ),
    ] = False,
) -> None:
    """Validate the config without touching the kernel.

    Prints every error with file, line and key, and how to fix it; warns about weak sequences
    (fewer than 3 steps, ascending ports, a single protocol, a prefix of another door's).
    An interface this host does not have is an error, as at apply and run, unless it is listed
    in options.late_interfaces too. Exits 0 if the config is valid (warnings included), 2 if not.
    """
    host = HostInterfaces(interface_names(), strict=not other_host)
    with exit_on_error():
        cfg = load(config, host=host)
    ports = sorted({str(p) for d in cfg.doors for p in d.knock_ports})
    # An SPA door has no knock ports: its packets come to the one SPA port.
    spa = f"SPA port {cfg.options.spa_port}/udp; " if cfg.spa_doors else ""
    typer.echo(
        f"{config}: OK: {len(cfg.doors)} door(s), knock ports {', '.join(ports) or 'none'}; "
        f"{spa}protected: {', '.join(map(str, sorted(cfg.protected))) or 'none'}"
    )


@commands.command(
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

    While a daemon runs for the table, apply is refused: it would change the table under the
    daemon, which keeps running its own config. Reload the daemon instead.

    The script the kernel accepted is kept as STATE_DIR/last-good.nft (0600), which
    `knocknft guard` loads at boot. If it cannot be kept, a warning says so; the table is
    loaded all the same and the exit status is 0.
    """
    armed: Armed | None = None
    with exit_on_error():
        # A printed script may be for another host; a loaded one must name this host's
        # interfaces, or a typo would leave knocks unheard.
        cfg = load(config, host=HostInterfaces(interface_names(), strict=not dry_run))
        # Once, now: with no daemon, nothing resolves the names again (see always_allow).
        cfg = resolve_config(cfg, NameResolver(warn=warn))
        if state_dir is not None:
            cfg = dataclasses.replace(
                cfg, options=dataclasses.replace(cfg.options, state_dir=state_dir)
            )
        if dry_run:
            if confirm is not None:
                raise UsageError("--dry-run loads nothing, so there is nothing to --confirm")
            typer.echo(render_ruleset(cfg), nl=False)
            return
        refuse_if_daemon_runs(cfg.options.table)
        lockout = ssh_lockout(cfg, os.environ.get("SSH_CONNECTION", ""))
        if lockout is not None:
            warn(lockout.warning(confirming=confirm is not None))
        state = StateDir(state_dir or cfg.options.state_dir)
        # Before the kernel: a state dir someone else could write is refused, not warned about.
        check_state_dir(state.path)
        if confirm is None:
            _warn_stale(refuse_if_pending(state))
            result = apply_config(cli_common.nft_factory(), cfg)
        else:
            seconds = option_seconds(confirm, "--confirm")
            armed = arm(cli_common.nft_factory(), cfg, seconds, state)
            _warn_stale(armed.stale)
            result = armed.applied
    verb = "replaced" if result.replaced else "installed"
    typer.echo(
        f"{verb} table inet {cfg.options.table}: {len(cfg.doors)} door(s), "
        f"{result.grants_kept} open grant(s) kept"
    )
    if result.save_error is not None:
        warn(
            f"not kept for the boot guard: {result.save_error}; after a reboot "
            "`knocknft guard` would load an older table, or none"
        )
    if armed is not None:
        _tell_armed(armed, state)
    for warning in doctor_warnings(cli_common.nft_factory(), cfg):
        warn(warning)


def _warn_stale(stale: Pending | None) -> None:
    if stale is not None:
        warn(
            "dropped a pending confirmation whose rollback watcher is gone "
            "(killed, or the machine restarted)"
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


@commands.command(
    "confirm",
    epilog="Example: knocknft apply --confirm 2m; ssh in anew to check; knocknft confirm",
)
def confirm_(config: ConfigOption = DEFAULT_CONFIG_PATH, state_dir: StateDirOption = None) -> None:
    """Keep what `knocknft apply --confirm` applied: cancel its rollback.

    Exits 0 when a rollback was cancelled, 1 when none was pending (the message says when the
    last one was rolled back, if it was).
    """
    with exit_on_error():
        done = confirm_change(StateDir(state_dir or options_for(config).state_dir))
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


@commands.command(epilog=GUARD_EPILOG)
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
        with exit_on_error():
            guarded = load_last_good(cli_common.nft_factory(), state_dir)
    except OSError as exc:
        fail(EXIT_FAILURE, f"cannot read {path}: {exc.strerror or exc}")
    if guarded.table is None:
        warn(
            f"nothing to load: {path} does not exist yet (`knocknft apply` and the "
            "daemon save it); nothing changed, the protected services are not guarded"
        )
        return
    if guarded.replaced:
        done = f"table inet {guarded.table} reloaded, {guarded.grants_kept} open grant(s) kept"
    else:
        done = f"table inet {guarded.table} installed: the protected services are closed"
    typer.echo(f"loaded {path}: {done}")
