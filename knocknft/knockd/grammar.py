"""knockd.conf, read with knockd's grammar, so `knocknft run -c /etc/knockd.conf` replaces knockd
without edits. Pure apart from reading one-time-sequences files through the injected reader.

The result is an ordinary `Config` whose doors carry knockd's commands and no `open`: under a
knockd.conf the commands are the only effect, exactly as under knockd. Errors are located like
the YAML loader's, with file and line, where knockd says only "syntax error".
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from knocknft.config import (
    DOOR_NAME_RE,
    IFNAME_RE,
    MAX_CMD_TIMEOUT,
    MAX_SEQ_TIMEOUT,
    MAX_SEQUENCE_LENGTH,
    Config,
    Door,
    HostInterfaces,
    Invalid,
    LoadedConfig,
    OneTimeSequence,
    Options,
    ReadFile,
    parse_address,
    parse_config,
    parse_int,
    parse_one_time_line,
    parse_tcpflags,
    read_config_text,
    read_text_file,
    unused_one_time_lines,
)
from knocknft.errors import ConfigError, Problem

_SECTION_RE = re.compile(r"^\[(.*)\]$")
# knockd trims with C's isspace(), which knows ASCII only; str.strip() would also eat U+00A0.
_C_SPACE = " \t\n\r\v\f"
_NBSP = "\u00a0"
# Control characters but the tab (white space to knockd); line ends are split off before.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


def _breaks_grammar(line: str) -> bool:
    """A non-breaking space where knockd's grammar needs white space: in a key, around a value,
    on an otherwise blank line or before a [section]. Inside a value it is just text."""
    if _NBSP not in line or _SECTION_RE.match(line):
        return False
    key, sep, value = line.partition("=")
    return not sep or _NBSP in key or value.strip(_C_SPACE) != value.strip()


# knockd's keys (lower case) -> our field; aliases map to the same field.
DOOR_KEYS = {
    "sequence": "sequence",
    "one_time_sequences": "one_time_sequences",
    "seq_timeout": "seq_timeout",
    "timeout": "seq_timeout",
    "tcpflags": "tcpflags",
    "start_command": "start_command",
    "command": "start_command",
    "stop_command": "stop_command",
    "cmd_timeout": "cmd_timeout",
    "start_command_6": "start_command_6",
    "command_6": "start_command_6",
    "stop_command_6": "stop_command_6",
    "target": "target",
}
OPTION_KEYS = ("usesyslog", "logfile", "pidfile", "interface")
_TIMEOUT_LIMITS = {"seq_timeout": MAX_SEQ_TIMEOUT, "cmd_timeout": MAX_CMD_TIMEOUT}


def looks_like_knockd_conf(text: str) -> bool:
    """knockd.conf opens with a `[section]` line; a YAML config never does."""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        return bool(_SECTION_RE.match(line)) and "," not in line
    return False


def parse_any_config(
    text: str, file: str, read_file: ReadFile | None = None, host: HostInterfaces | None = None
) -> tuple[LoadedConfig, KnockdOptions | None]:
    """A config of either kind, told apart as `run` tells them: knockd.conf (with its [options])
    or knocknft's YAML (None for the options). With `host`, the interfaces named must exist."""
    if looks_like_knockd_conf(text):
        conf = read_knockd_conf(text, file, read_file, host)
        return LoadedConfig(conf.config, conf.warnings), conf.options
    return parse_config(text, file, read_file, host), None


def load_any_config(
    path: Path, host: HostInterfaces | None = None
) -> tuple[LoadedConfig, KnockdOptions | None]:
    """The config file at `path`, of either kind (see `parse_any_config`): what every command
    that takes `-c FILE` reads, so each takes a knockd.conf as `run` does."""
    return parse_any_config(read_config_text(path), str(path), host=host)


class _Error(Protocol):
    def __call__(self, line: int | None, key: str, message: str, hint: str = "") -> None: ...


@dataclass
class KnockdOptions:
    """[options] as knockd has them; `pidfile` matters only to `run -d`."""

    use_syslog: bool = False
    log_file: Path | None = None
    pid_file: Path | None = None
    interface: str | None = None


@dataclass(frozen=True)
class KnockdConf:
    """A knockd.conf as read: the doors as a `Config`, the [options], and where each directive
    stood, so `knocknft import` can point at the line a door or a command came from."""

    config: Config
    options: KnockdOptions
    # One mapping per door of `config.doors`, in order: our field name -> the line that set it
    # (the last one when a key or its alias is repeated: knockd keeps the last).
    door_lines: tuple[Mapping[str, int], ...]
    # knockd's option key (lower case) -> its line.
    option_lines: Mapping[str, int]
    warnings: tuple[Problem, ...] = ()


@dataclass
class _Section:
    name: str
    line: int
    values: dict[str, tuple[str, int]] = field(default_factory=dict)


def parse_knockd_conf(
    text: str, file: str = "knockd.conf", read_file: ReadFile | None = None
) -> tuple[Config, KnockdOptions]:
    """The doors and the [options] of a knockd.conf; see `read_knockd_conf`."""
    conf = read_knockd_conf(text, file, read_file)
    return conf.config, conf.options


def read_knockd_conf(  # noqa: C901, PLR0912, PLR0915 - knockd's line grammar in one place, as knockd's own parser reads it
    text: str,
    file: str = "knockd.conf",
    read_file: ReadFile | None = None,
    host: HostInterfaces | None = None,
) -> KnockdConf:
    """Read knockd.conf with knockd's grammar. Raises ConfigError listing every problem, each with
    its line, where knockd would refuse to start. With `host`, the Interface must be one of its
    interfaces (knockd refuses an unknown one too)."""
    reader: ReadFile = read_file or read_text_file
    problems: list[Problem] = []
    sections: list[_Section] = []
    options = KnockdOptions()
    option_lines: dict[str, int] = {}

    def error(line: int | None, key: str, message: str, hint: str = "") -> None:
        problems.append(Problem(file, line, key, message, hint))

    current: _Section | None = None
    lookalike_lines: list[int] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip(_C_SPACE)
        if not line or line.startswith("#"):
            continue
        control = _CONTROL.search(line)
        if control is not None:
            # A NUL would reach a command's argv (where exec refuses it) or a path.
            error(
                number,
                "",
                f"control character U+{ord(control.group()):04X} in a directive",
                "a knockd.conf is plain text; remove it",
            )
            continue
        if _breaks_grammar(line):
            # Reported once below; read on as if it were a space, so that one pasted character
            # does not drag in errors about every directive after it.
            lookalike_lines.append(number)
            line = line.replace(_NBSP, " ").strip(_C_SPACE)
            if not line:
                continue
        header = _SECTION_RE.match(line)
        if header:
            current = _Section(header.group(1).strip(), number)
            sections.append(current)
            continue
        if current is None:
            error(
                number, "", "a directive before any [section]", "start with [options] or [doorname]"
            )
            continue
        key, sep, value = line.partition("=")
        key = key.strip().lower()
        if not sep:
            if key == "usesyslog":
                # knockd takes the bare word in any section, a door's too, and sets the global.
                options.use_syslog = True
                option_lines[key] = number
            else:
                error(
                    number,
                    f"[{current.name}]",
                    f"{line!r} is not a `key = value` directive (knockd: syntax error)",
                    "every line is `key = value` or the bare word UseSyslog; join a wrapped "
                    "command back into one line",
                )
            continue
        current.values[key] = (value.strip(), number)

    if lookalike_lines:
        shown = ", ".join(map(str, lookalike_lines[:12])) + (
            ", ..." if len(lookalike_lines) > 12 else ""
        )
        error(
            lookalike_lines[0],
            "",
            f"a non-breaking space (U+00A0) where knockd expects a space or a tab, on line(s) "
            f"{shown}: knockd reads it as text (syntax error) and does not start",
            "it comes from copying a web page; replace each with a plain space",
        )
    doors: list[Door] = []
    door_lines: list[Mapping[str, int]] = []
    for section in sections:
        if section.name == "options":
            _options(section, options, error)
            option_lines.update({k: line for k, (_, line) in section.values.items()})
        else:
            door = _door(section, error, reader)
            if door is not None:
                doors.append(door)
                door_lines.append(_field_lines(section))
    warnings: list[Problem] = []
    if host is not None and options.interface and not host.has(options.interface):
        message, hint = host.explain(options.interface, "Interface")
        where = Problem(file, option_lines.get("interface"), "[options] interface", message, hint)
        (problems if host.strict else warnings).append(where)
    if not problems and not doors:
        error(1, "", "no doors are defined", "add a section such as [openSSH] with a Sequence")
    if problems:
        raise ConfigError(problems)
    opts = Options(
        log_file=options.log_file,
        syslog=options.use_syslog,
        interfaces=(options.interface,) if options.interface else (),
    )
    return KnockdConf(
        Config(opts, tuple(doors), file),
        options,
        tuple(door_lines),
        option_lines,
        tuple(warnings),
    )


def _field_lines(section: _Section) -> dict[str, int]:
    lines = {"name": section.line}
    for key, (_, line) in _in_file_order(section):
        lines[DOOR_KEYS[key]] = line
    return lines


def _in_file_order(section: _Section) -> list[tuple[str, tuple[str, int]]]:
    """A section's directives by line: for a key and its alias (Command, Start_Command) the
    later line wins, as in knockd, whichever was written first."""
    return sorted(section.values.items(), key=lambda item: item[1][1])


def _unknown(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else f"knockd keys here: {', '.join(known)}"


def _options(section: _Section, options: KnockdOptions, error: _Error) -> None:
    for key, (value, line) in section.values.items():
        if key == "usesyslog":
            # `UseSyslog = yes` is a syntax error in knockd, a plain setting here.
            options.use_syslog = value.lower() not in ("no", "false", "off", "0")
        elif key == "logfile":
            options.log_file = Path(value)
        elif key == "pidfile":
            options.pid_file = Path(value)
        elif key == "interface":
            if IFNAME_RE.match(value) and not value.endswith("*"):
                options.interface = value
            else:
                error(
                    line,
                    "[options] interface",
                    f"{value[:40]!r} is not an interface name",
                    "one interface, at most 15 characters, e.g. eth0",
                )
        else:
            error(
                line,
                f"[options] {key}",
                f"unknown option {key!r}",
                _unknown(key, list(OPTION_KEYS)),
            )


def _door(section: _Section, error: _Error, reader: ReadFile) -> Door | None:  # noqa: C901, PLR0912 - one branch per knockd.conf door key, as knockd reads them
    name = section.name
    where = f"[{name}]"
    fields: dict[str, object] = {"name": name, "line": section.line}
    failed = False

    def fail(line: int | None, key: str, message: str, hint: str = "") -> None:
        nonlocal failed
        failed = True
        error(line, f"{where} {key}".strip(), message, hint)

    if not DOOR_NAME_RE.match(name):
        fail(
            section.line,
            "",
            f"door name {name!r} is not usable",
            "letters, digits, _ . - (at most 32)",
        )
    for key, (value, line) in _in_file_order(section):
        field_name = DOOR_KEYS.get(key)
        if field_name is None:
            fail(line, key, f"unknown key {key!r}", _unknown(key, list(DOOR_KEYS)))
            continue
        try:
            if field_name == "sequence":
                fields["sequence"] = parse_one_time_line(value)
                if len(fields["sequence"]) > MAX_SEQUENCE_LENGTH:  # type: ignore[arg-type]
                    raise Invalid(f"more than {MAX_SEQUENCE_LENGTH} steps")
            elif field_name in ("seq_timeout", "cmd_timeout"):
                # knockd reads whole seconds; the limits are the YAML config's.
                fields[field_name] = parse_int(value, 1, _TIMEOUT_LIMITS[field_name])
            elif field_name == "tcpflags":
                fields["tcpflags"] = parse_tcpflags(value)
            elif field_name == "target":
                fields["target"] = parse_address(value)
            elif field_name == "one_time_sequences":
                fields.update(_one_time(Path(value), line, fail, reader))
            elif not value:
                raise Invalid("the command is empty")
            else:
                fields[field_name] = value
        except Invalid as exc:
            fail(line, key, exc.message, exc.hint)
    if "sequence" not in fields and "one_time_sequences" not in fields:
        hint = "add e.g. Sequence = 7000,8000,9000"
        if difflib.get_close_matches(name.lower(), ["options"], cutoff=0.7):
            # knockd reads every section but exactly [options] as a door, and a door without a
            # sequence stops it at start: "section '...' has an empty knock sequence".
            hint = (
                "did you mean [options]? knockd reads any other section name as a door, and "
                "refuses to start on a door without a sequence"
            )
        fail(section.line, "", "the door has no Sequence", hint)
    if failed:
        return None
    return Door(**fields)  # type: ignore[arg-type]  # keys and types checked above


def _one_time(path: Path, line: int, fail: _Error, reader: ReadFile) -> dict[str, object]:
    try:
        text = reader(path)
    except OSError as exc:
        fail(line, "one_time_sequences", f"cannot read {path}: {exc.strerror or exc}")
        return {}
    sequences = []
    for number, text_line in unused_one_time_lines(text):
        try:
            sequences.append(OneTimeSequence(number, parse_one_time_line(text_line)))
        except Invalid:
            continue  # knockd skips lines it cannot parse
    return {"one_time_sequences": path, "one_time": tuple(sequences)}
