"""`knocknft open` and `close`: the grants in the kernel's sets, changed by hand."""

from __future__ import annotations

from typing import Annotated

import typer

from knocknft.admin import cli_common
from knocknft.admin.cli_common import (
    ConfigOption,
    exit_on_error,
    load,
    option_seconds,
    table_name,
)
from knocknft.config import DEFAULT_CONFIG_PATH, format_seconds
from knocknft.nft.operations import (
    close_grants,
    granting_door,
    lift_bans,
    open_grant,
    parse_client_address,
)

# Merged into knocknft.admin.cli.app, which lists every command in one order.
commands = typer.Typer()


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
