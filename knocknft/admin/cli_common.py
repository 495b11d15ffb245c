"""What every `knocknft` command shares: exit codes, the common options, the one place knocknft's
errors become a message and an exit status, and the nft factory tests swap.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from knocknft import __version__
from knocknft.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    HostInterfaces,
    Invalid,
    Options,
    parse_duration,
)
from knocknft.daemon.logs import ERROR, WARNING, is_journal
from knocknft.errors import ConfigError, KnocknftError, NftError, UsageError
from knocknft.knockd.grammar import load_any_config
from knocknft.nft.libnft import LibNft, NftSnapshots

EXIT_FAILURE = 1  # the kernel refused, or another runtime failure
EXIT_INVALID = 2  # the config or a command-line argument is invalid; nothing was changed

EXIT_CODES_HELP = (
    "Exit status: 0 success; 1 the kernel (libnftables) refused or another runtime failure; "
    "2 invalid config or arguments, nothing changed."
)

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        help="The config file: knocknft's YAML, or a knockd.conf (read as `run` reads it).",
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

# Tests swap this for a factory that targets a fake or a namespace; commands call it as
# cli_common.nft_factory(), looked up at each call, so that they see the swap.
nft_factory: Callable[[], NftSnapshots] = LibNft


def say(text: str, priority: int) -> None:
    """A message on stderr; when stderr is systemd's journal (`knocknft guard` at boot), with
    its priority prefix (daemon.logs), so the journal files an error as an error."""
    typer.echo(f"<{priority}>{text}" if is_journal(sys.stderr) else text, err=True)


def warn(message: str) -> None:
    say(f"warning: {message}", WARNING)


def fail(code: int, message: str) -> NoReturn:
    say(f"knocknft: {message}", ERROR)
    raise typer.Exit(code)


@contextmanager
def exit_on_error() -> Iterator[None]:
    """Map knocknft's error tree to messages and exit codes, in one place for every command."""
    try:
        yield
    except ConfigError as exc:
        for problem in exc.problems:
            say(f"error: {problem}", ERROR)
        n = len(exc.problems)
        fail(EXIT_INVALID, f"{n} error{'s' if n != 1 else ''} in the config; nothing was changed")
    except UsageError as exc:
        fail(EXIT_INVALID, str(exc))
    except NftError as exc:
        fail(EXIT_FAILURE, f"nft: {exc}")
    except KnocknftError as exc:
        fail(EXIT_FAILURE, str(exc))


def load(path: Path, show_warnings: bool = True, host: HostInterfaces | None = None) -> Config:
    """The config at `path`, YAML or knockd.conf, as `run` reads it: the one loader of every
    command that takes `-c FILE`. With `host`, its interfaces must exist there (HostInterfaces)."""
    loaded, _ = load_any_config(path, host)
    if show_warnings:
        for problem in loaded.warnings:
            warn(str(problem))
    return loaded.config


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"knocknft {__version__}")
        raise typer.Exit()


# `knocknft -V` and, as knockd has it, `knocknft run -V`.
VersionOption = Annotated[
    bool,
    typer.Option(
        "--version",
        "-V",
        help="Print the version and exit.",
        callback=_show_version,
        is_eager=True,
    ),
]


def config_or_defaults(config: Path) -> Config:
    """The config to read: the one given, or, when the default one does not exist, no doors
    and the default options (a table applied with them, a daemon's state dir)."""
    if config == DEFAULT_CONFIG_PATH and not config.exists():
        return Config(Options(), ())
    return load(config, show_warnings=False)


def options_for(config: Path) -> Options:
    return config_or_defaults(config).options


def table_name(config: Path) -> str:
    return options_for(config).table


def option_seconds(text: str, option: str) -> int:
    try:
        return parse_duration(text)
    except Invalid as exc:
        raise UsageError(f"{option}: {exc.message} ({exc.hint})") from None
