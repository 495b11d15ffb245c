"""The command lines as plain data, read from their definitions: the typer app of `knocknft` (its
click command tree) and the argparse parser of the knock client. The man pages and the shell
completions are written from this one model, so a new command or option appears in both without
anyone writing it down.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

import typer.main

from knocknft import __version__
from knocknft.admin.cli import app
from knocknft.client.knock import _parser as knock_parser

# Metavars whose value is a file or a folder: the shells complete a path for them.
PATH_METAVARS = frozenset({"FILE", "OUT", "DIR", "PIDFILE", "LOGFILE", "PATH"})
DIR_METAVARS = frozenset({"DIR"})


@dataclass(frozen=True)
class Param:
    """An option (`flags` set) or a positional argument (`flags` empty, `metavar` its name).
    `metavar` is None for an option that takes no value."""

    flags: tuple[str, ...]
    metavar: str | None
    help: str
    choices: tuple[str, ...] = ()
    repeatable: bool = False

    @property
    def takes_value(self) -> bool:
        return self.metavar is not None

    @property
    def completes_path(self) -> bool:
        return self.metavar in PATH_METAVARS

    @property
    def completes_dir(self) -> bool:
        return self.metavar in DIR_METAVARS


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    options: tuple[Param, ...]
    arguments: tuple[Param, ...]

    @property
    def summary(self) -> str:
        return first_sentence(self.help)


@dataclass(frozen=True)
class Program:
    """A program: its own options, and its commands (none for the knock client)."""

    name: str
    version: str
    help: str
    options: tuple[Param, ...]
    arguments: tuple[Param, ...]
    commands: tuple[Command, ...]
    epilog: str = ""
    usage: str = ""

    @property
    def summary(self) -> str:
        return first_sentence(self.help)

    def command(self, name: str) -> Command:
        return next(c for c in self.commands if c.name == name)


def first_sentence(text: str) -> str:
    head = text.strip().split("\n\n")[0].replace("\n", " ")
    match = re.match(r"(.+?[.:])(\s|$)", head)
    return (match.group(1) if match else head).rstrip(".:")


def _click_param(param: object) -> Param:
    opts = tuple(getattr(param, "opts", ())) + tuple(getattr(param, "secondary_opts", ()))
    help_text = str(getattr(param, "help", None) or "")
    metavar = getattr(param, "metavar", None)
    choices = tuple(str(c) for c in getattr(getattr(param, "type", None), "choices", ()) or ())
    multiple = bool(getattr(param, "multiple", False))
    if getattr(param, "param_type_name", "") == "argument":
        name = metavar or str(getattr(param, "name", "ARG")).upper()
        return Param((), name, help_text, choices)
    is_flag = bool(getattr(param, "is_flag", False)) or bool(getattr(param, "count", False))
    # Short flags first, as --help lists them.
    flags = tuple(sorted(opts, key=lambda o: (o.startswith("--"), o)))
    return Param(flags, None if is_flag else (metavar or "VALUE"), help_text, choices, multiple)


def _split(params: list[Param]) -> tuple[tuple[Param, ...], tuple[Param, ...]]:
    return tuple(p for p in params if p.flags), tuple(p for p in params if not p.flags)


def knocknft_program() -> Program:
    group = typer.main.get_command(app)
    commands = []
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        if getattr(command, "hidden", False):
            continue
        params = [_click_param(p) for p in command.params if not getattr(p, "hidden", False)]
        options, arguments = _split(params)
        commands.append(Command(name, command.help or "", options, arguments))
    own = [_click_param(p) for p in group.params]
    own.append(Param(("-h", "--help"), None, "Show the help of knocknft or of a command."))
    options, _ = _split(own)
    return Program("knocknft", __version__, group.help or "", options, (), tuple(commands))


def _argparse_param(action: argparse.Action) -> Param:
    help_text = "" if action.help in (None, argparse.SUPPRESS) else str(action.help)
    help_text = help_text.replace("%(prog)s", "knock").replace("%%", "%")
    choices = tuple(str(c) for c in action.choices or ())
    if not action.option_strings:
        name = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
        return Param((), name, help_text, choices, action.nargs in ("*", "+", "..."))
    takes_value = action.nargs != 0
    metavar: str | None = None
    if takes_value:
        metavar = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
    flags = tuple(sorted(action.option_strings, key=lambda o: (o.startswith("--"), o)))
    return Param(flags, metavar, help_text, choices, isinstance(action, argparse._AppendAction))


def knock_program(name: str) -> Program:
    """The knock client, installed as `name` (knocknft-knock beside Debian knockd's knock)."""
    parser = knock_parser(name)
    params = [_argparse_param(a) for a in parser._actions if a.help != argparse.SUPPRESS]
    options, arguments = _split(params)
    return Program(
        name,
        __version__,
        parser.description or "",
        options,
        arguments,
        (),
        parser.epilog or "",
        parser.usage or "",
    )
