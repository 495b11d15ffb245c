"""`knocknft import`: a knockd.conf turned into knocknft YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from knocknft.admin.cli_common import EXIT_FAILURE, EXIT_INVALID, exit_on_error, fail
from knocknft.config import read_config_text
from knocknft.files import write_atomic
from knocknft.knockd.grammar import KnockdConf, read_knockd_conf
from knocknft.knockd.writer import TRUSTED_NEXT_TO_CONF, import_knockd, trusted_file

# Merged into knocknft.admin.cli.app, which lists every command in one order.
commands = typer.Typer()


@commands.command(
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
    force: Annotated[
        bool, typer.Option("--force", "-f", help="With -o: replace OUT if it exists.")
    ] = False,
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
    its line; nothing is written) or OUT exists and --force is not given.
    """
    refuse_overwrite(output, force)
    unread = _UnreadFiles()
    with exit_on_error():
        conf = read_knockd_conf(read_config_text(file), str(file), read_file=unread.read)
        result = import_knockd(conf, str(file), _trusted_list(conf, file))
    for door, lines in zip(conf.config.doors, conf.door_lines, strict=True):
        reason = unread.reasons.get(door.one_time_sequences) if door.one_time_sequences else None
        if reason is not None:
            typer.echo(
                f"warning: {file}:{lines['one_time_sequences']}: [{door.name}]: "
                f"one_time_sequences: cannot read {door.one_time_sequences} here ({reason}): "
                "`knocknft check` of the output fails until that file can be read where it runs",
                err=True,
            )
    for problem in result.not_mapped:
        typer.echo(f"not mapped: {problem}", err=True)
    if output is None:
        typer.echo(result.yaml, nl=False)
        return
    try:
        write_atomic(output, result.yaml)
    except OSError as exc:
        fail(EXIT_FAILURE, f"cannot write {output}: {exc.strerror or exc}")
    typer.echo(f"wrote {output}: {len(conf.config.doors)} door(s)", err=True)


def refuse_overwrite(output: Path | None, force: bool) -> None:
    """An existing OUT is someone's config, perhaps the one running: replaced only when asked,
    and refused before any reading, so nothing is half done."""
    if output is not None and not force and (output.exists() or output.is_symlink()):
        fail(
            EXIT_INVALID,
            f"{output} exists; nothing was written: give another -o, or --force to replace it",
        )


def _trusted_list(conf: KnockdConf, file: Path) -> Path | None:
    """The trusted list of the knockd setup: named by a door's command, or knockd.trusted next
    to the knockd.conf (the university's init script reads it from there)."""
    named = trusted_file(conf)
    if named is not None:
        return named
    beside = file.absolute().parent / TRUSTED_NEXT_TO_CONF
    return beside if beside.is_file() else None


class _UnreadFiles:
    """One-time-sequences files read as text, or as nothing when unreadable: an import may run
    away from the server, where `knocknft check` then reads them. Why each could not be read is
    kept, for the warning."""

    def __init__(self) -> None:
        self.reasons: dict[Path, str] = {}

    def read(self, path: Path) -> str:
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.reasons[path] = (
                exc.strerror or str(exc) if isinstance(exc, OSError) else "not UTF-8 text"
            )
            return ""
