"""`knocknft status`, `open` and `close`: the grants in the kernel's sets, read and changed by
hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from knocknft.admin import cli_common
from knocknft.admin.cli_common import (
    EXIT_FAILURE,
    ConfigOption,
    exit_on_error,
    load,
    option_seconds,
    options_for,
    table_name,
)
from knocknft.admin.status import format_bans, format_table
from knocknft.config import DEFAULT_CONFIG_PATH, format_seconds
from knocknft.nft.operations import (
    close_grants,
    granting_door,
    lift_bans,
    open_grant,
    parse_client_address,
)
from knocknft.nft.queries import doctor_warnings, read_bans, read_grants

# Merged into knocknft.admin.cli.app, which lists every command in one order.
commands = typer.Typer()


@commands.command(
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
    """List the open grants (address, door, service, time left), then the banned sources.

    Reads the kernel's sets, so it works with or without the daemon. The --json form is a
    stable object {"table": ..., "grants": [{"address", "family", "door", "service", "port",
    "protocol", "timeout", "expires_in"}], "bans": [{"address", "family", "door", "deny",
    "timeout", "expires_in"}]} with times in seconds.

    With --stats: the daemon's counters (knocks, stages, opens, timeouts, evictions, lost NFLOG
    messages, failed commands...) as it last wrote them (every 5s), and whether it is running.
    --json then gives {"state": "running"|"stale"|"stopped"|"absent", "running", "reason",
    "path", "age", "stats": {...} or null}.
    """
    if stats:
        _daemon_stats(config, state_dir, as_json)
        return
    with exit_on_error():
        options = options_for(config)
        nft = cli_common.nft_factory()
        grants = read_grants(nft, options.table)
        bans = read_bans(nft, options.table)
        blocked = doctor_warnings(nft, load(config, show_warnings=False)) if config.exists() else []
    if as_json:
        report = {"table": options.table, "effective": not blocked}
        report["grants"] = [g.to_json() for g in grants]
        report["bans"] = [b.to_json() for b in bans]
        typer.echo(json.dumps(report, indent=2))
    else:
        typer.echo(format_table(grants) + format_bans(bans), nl=False)
    for warning in blocked:
        typer.echo(f"warning: grants are not effective: {warning}", err=True)


def _daemon_stats(config: Path, state_dir: Path | None, as_json: bool) -> None:
    from knocknft.daemon.stats import format_status, read_status

    with exit_on_error():
        found = read_status(state_dir or options_for(config).state_dir)
    if as_json:
        typer.echo(json.dumps(found.to_json(), indent=2))
    else:
        typer.echo(format_status(found), nl=False)
    if not found.running:
        raise typer.Exit(EXIT_FAILURE)


def _duration(text: str | None) -> int | None:
    return None if text is None else option_seconds(text, "--for")


@commands.command(
    "open",
    epilog="Examples: knocknft open 198.18.0.2 --door ssh --for 10m; knocknft open 2001:db8::2 "
    "(a config with one door that grants)",
)
def open_(
    address: Annotated[
        str, typer.Argument(help="The client's IPv4 or IPv6 address.", metavar="ADDRESS")
    ],
    door: Annotated[
        str | None,
        typer.Option(
            "--door",
            "-d",
            help="The door whose services to grant. Default: the config's only door that "
            "grants services; with several, the error lists them.",
            metavar="NAME",
        ),
    ] = None,
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
    with exit_on_error():
        cfg = load(config, show_warnings=False)
        client = parse_client_address(address)
        chosen = granting_door(cfg, door)
        if door is None:
            typer.echo(f"door {chosen.name}: the only door that grants services", err=True)
        grants = open_grant(cli_common.nft_factory(), cfg, client, chosen, _duration(for_))
    for g in grants:
        typer.echo(
            f"opened {g.service} for {g.address} (door {g.door}) for {format_seconds(g.timeout)}"
        )


@commands.command(epilog="Example: knocknft close 2001:db8::2 --door ssh")
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
    """Revoke ADDRESS's grants now, and lift its bans; new connections are dropped (established
    ones stay), a banned address gets in again as anyone does.

    Exits 0 also when nothing was open or banned, so it is safe in scripts.
    """
    with exit_on_error():
        table = table_name(config)
        client = parse_client_address(address)
        nft = cli_common.nft_factory()
        revoked = close_grants(nft, table, client, door)
        lifted = lift_bans(nft, table, client, door)
    if not revoked and not lifted:
        typer.echo(f"nothing open for {client}" + (f" by door {door}" if door else ""))
    for g in revoked:
        typer.echo(f"closed {g.service} for {g.address} (door {g.door})")
    for b in lifted:
        typer.echo(f"lifted the ban on {b.address} (door {b.door})")
