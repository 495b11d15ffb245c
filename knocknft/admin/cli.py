"""The `knocknft` command line: the typer app, which lists the commands of its sibling modules in
one order. Commands are thin: they parse, call `operations`, and map knocknft's errors to a message
on stderr and an exit code scripts can rely on (cli_common, shared by every command).
"""

from __future__ import annotations

import typer

from knocknft.admin import (
    cli_config,
    cli_doctor,
    cli_grants,
    cli_import,
    cli_keygen,
    cli_run,
    cli_status,
)
from knocknft.admin.cli_common import EXIT_CODES_HELP, VersionOption

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
# The commands, in the order `knocknft --help` lists them.
for group in (
    cli_config.commands,
    cli_doctor.commands,
    cli_status.commands,
    cli_grants.commands,
    cli_run.commands,
    cli_import.commands,
    cli_keygen.commands,
):
    app.add_typer(group)


@app.callback()
def _main(
    version: VersionOption = False,
) -> None:
    pass


def main() -> None:
    app(prog_name="knocknft")


if __name__ == "__main__":
    main()
