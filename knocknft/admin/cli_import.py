"""`knocknft import`: a knockd.conf, or an fwknop access.conf, turned into knocknft YAML."""

from __future__ import annotations

import errno
import os
from pathlib import Path, PurePosixPath
from typing import Annotated

import typer

from knocknft.admin.cli_common import EXIT_FAILURE, EXIT_INVALID, exit_on_error, fail
from knocknft.config import MAX_CONFIG_BYTES, read_config_text, read_regular_file
from knocknft.files import write_atomic
from knocknft.fwknop.daemonconf import FWKNOPD_CONF, looks_like_fwknopd_conf, read_fwknopd_conf
from knocknft.fwknop.grammar import looks_like_access_conf, read_access_conf
from knocknft.fwknop.writer import import_fwknop
from knocknft.knockd.grammar import KnockdConf, read_knockd_conf
from knocknft.knockd.writer import TRUSTED_NEXT_TO_CONF, import_knockd, trusted_file

# Merged into knocknft.admin.cli.app, which lists every command in one order.
commands = typer.Typer()


@commands.command(
    "import",
    epilog=(
        "Example: knocknft import /etc/knockd.conf -o /etc/knocknft/config.yaml && "
        "knocknft check -c /etc/knocknft/config.yaml; "
        "knocknft import /etc/fwknop/access.conf -o /etc/knocknft/config.yaml"
    ),
)
def import_(
    file: Annotated[
        Path,
        typer.Argument(help="The knockd.conf, or fwknop's access.conf, to read.", metavar="FILE"),
    ],
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
    """Turn a knockd.conf, or an fwknop access.conf, into a knocknft YAML config that does what
    knockd or fwknopd did. Which one FILE is, is told by its content.

    Reads FILE with knockd's grammar (case-insensitive keys, the aliases Command, Timeout and
    Command_6, every [options] directive) and writes one door per section, with comments naming
    the source line of each door and command.

    iptables, ip6tables and nft commands that accept the knocker (%IP%) on a port become native
    grants: with the matching delete as stop_command, `open` for cmd_timeout; deleted by
    another door (openSSH/closeSSH), `open` for 1h and a `close` door. Every other command is
    kept as written, and knocknft runs it as knockd did; each one is listed on stderr with its
    line, and in the output.

    An access.conf becomes one SPA door (`fwknop:`) per stanza, with the SPA port and interface
    from the fwknopd.conf beside it; a stanza knocknft cannot serve (no HMAC key, GPG only, NAT,
    ...) is left out, and each such stanza and each keyword without a counterpart is listed on
    stderr with its line.

    Exits 0 when the YAML was written, 2 when FILE is not a valid knockd.conf or access.conf, or
    holds nothing knocknft can serve (every error with its line; nothing is written), or when
    OUT exists and --force is not given.
    """
    refuse_overwrite(output, force)
    with exit_on_error():
        text = read_config_text(file)
    if looks_like_access_conf(text):
        _import_fwknop(file, text, output)
        return
    if looks_like_fwknopd_conf(text):
        fail(
            EXIT_INVALID,
            f"{file} is fwknopd.conf: give the access.conf beside it, whose stanzas hold the "
            f"keys (`knocknft import {file.parent / 'access.conf'}`); this file is read with it",
        )
    unread = _UnreadFiles()
    with exit_on_error():
        conf = read_knockd_conf(text, str(file), read_file=unread.read)
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
    _write(output, result.yaml, len(conf.config.doors))


def _write(output: Path | None, text: str, doors: int) -> None:
    """The YAML to `output` (atomically, 0600) or to stdout."""
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        write_atomic(output, text)
    except OSError as exc:
        fail(EXIT_FAILURE, f"cannot write {output}: {exc.strerror or exc}")
    typer.echo(f"wrote {output}: {doors} door(s)", err=True)


def _import_fwknop(file: Path, text: str, output: Path | None) -> None:
    """access.conf (with its includes) and the fwknopd.conf beside it -> YAML."""
    beside = file.parent / FWKNOPD_CONF
    with exit_on_error():
        access = read_access_conf(text, str(file), _IncludedFiles())
        fwknopd = (
            read_fwknopd_conf(read_config_text(beside, "fwknopd.conf"), str(beside))
            if beside.exists()
            else None
        )
        result = import_fwknop(access, fwknopd)
    for problem in result.refused:
        typer.echo(f"not imported: {problem}", err=True)
    for problem in result.not_mapped:
        typer.echo(f"not mapped: {problem}", err=True)
    _write(output, result.yaml, result.doors)


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
            data = read_regular_file(path, MAX_CONFIG_BYTES)
            if len(data) > MAX_CONFIG_BYTES:
                raise OSError(errno.EFBIG, f"it is bigger than {MAX_CONFIG_BYTES} bytes")
            return data.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.reasons[path] = (
                exc.strerror or str(exc) if isinstance(exc, OSError) else "not UTF-8 text"
            )
            return ""


class _IncludedFiles:
    """The files an access.conf includes, read as its own text is (UTF-8, bounded)."""

    def read(self, path: PurePosixPath) -> str:
        data = read_regular_file(Path(path), MAX_CONFIG_BYTES)
        if len(data) > MAX_CONFIG_BYTES:
            raise ValueError(f"bigger than {MAX_CONFIG_BYTES} bytes")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("not UTF-8 text") from None

    def list_dir(self, folder: PurePosixPath) -> list[str]:
        return os.listdir(folder)
