"""`knocknft doctor`: whether a grant really opens the protected services, alongside the firewall
the server already has (knocknft.core.doctor judges, knocknft.core.fixes words the fix)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from knocknft.admin import cli_common
from knocknft.admin.cli_common import EXIT_FAILURE, ConfigOption, exit_on_error, load
from knocknft.config import DEFAULT_CONFIG_PATH
from knocknft.core.doctor import Finding, describe, diagnose
from knocknft.nft.queries import read_ruleset, table_exists, table_missing

# Merged into knocknft.admin.cli.app, which lists every command in one order.
commands = typer.Typer()

DOCTOR_EPILOG = (
    "Examples: knocknft doctor; knocknft doctor --json | jq -r '.findings[].fix'\n\n"
    "Exit status: 0 a grant opens every protected service; 1 another firewall still drops "
    "one (or the table is not loaded, or the ruleset cannot be read); 2 invalid config."
)


@commands.command(epilog=DOCTOR_EPILOG)
def doctor(
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    as_json: Annotated[
        bool, typer.Option("--json", help="Machine-readable output (stable).")
    ] = False,
) -> None:
    """Check that a grant really opens the protected services, whatever else is loaded.

    An accept in knocknft's table does not override a drop in another table's chain on the
    same hook: Debian's nftables.conf with policy drop, ufw's or Docker's iptables rules,
    firewalld. doctor reads the whole ruleset and names each base chain (table, chain, hook,
    priority) that would still drop a granted client, with the fix for that kind of firewall:
    one rule accepting the packets knocknft marks as granted (options.grant_mark), so that
    firewall keeps dropping everything else. The text output adds how to keep the fix
    (ufw's before.rules, firewalld's ports, nftables.conf).

    --json prints {"ok": bool, "findings": [{"table", "chain", "hook", "priority", "fix"}]};
    each fix is one nft, iptables or ip6tables command with no shell operators.
    """
    with exit_on_error():
        cfg = load(config)
        nft = cli_common.nft_factory()
        if not table_exists(nft, cfg.options.table):
            raise table_missing(cfg.options.table)
        findings = diagnose(read_ruleset(nft), cfg)
    if as_json:
        report = {"ok": not findings, "findings": [f.to_json() for f in findings]}
        typer.echo(json.dumps(report, indent=2))
    else:
        _show(findings, cfg.options.table)
    if findings:
        raise typer.Exit(EXIT_FAILURE)


def _show(findings: list[Finding], table: str) -> None:
    if not findings:
        typer.echo(f"ok: nothing outside table inet {table} drops what a grant opens")
        return
    for finding in findings:
        typer.echo(describe(finding))
        for line in finding.fixes.keep:
            typer.echo(f"  {line}")
    typer.echo(f"{len(findings)} chain(s) still drop granted clients: run each fix, then doctor")
