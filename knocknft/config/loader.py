"""Reading config files: the config itself, and through `read_text_file` the one-time-sequences
files its doors name. The one module of knocknft.config that does I/O; `parse_config` does only
when it is given no `read_file`.

Every read of a file an admin names goes through `open_regular_file`: a FIFO, a device (such as
/dev/zero) or a directory given as a config, a key or an include would block the command, or
feed it without end, so only a regular file is read. `read_regular_file` is that read, bounded,
for the other readers of named files (the importers' includes, the SPA client's key).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import yaml

from knocknft.config.doors import ReadFile, check_doors, parse_door
from knocknft.config.model import (
    MAX_CONFIG_BYTES,
    MAX_DOORS,
    Config,
    Door,
    HostInterfaces,
    LoadedConfig,
)
from knocknft.config.options import check_rate_limit, parse_options
from knocknft.config.scalars import one_time_line_starts
from knocknft.config.spa import check_spa
from knocknft.config.walker import Walker, compose_yaml, line_of
from knocknft.errors import ConfigError, Problem


def read_text_file(path: Path) -> str:
    """The default `ReadFile`: a door's one-time-sequences file, from disk, if it is safe (see
    `open_one_time_file`) and UTF-8. Every failure is an OSError that names no content: the
    file holds secrets, and its text must never reach a log."""
    with os.fdopen(open_one_time_file(path), "rb") as handle:
        data = handle.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = sum(1 for start in one_time_line_starts(data) if start <= exc.start)
        raise OSError(errno.EILSEQ, f"line {line} is not UTF-8 text") from None


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def open_regular_file(path: Path, flags: int = os.O_RDONLY, *, follow_symlinks: bool = True) -> int:
    """A descriptor of `path`, which must be a regular file (checked on the descriptor). Raises
    OSError saying why not: EINVAL naming what it is instead, ELOOP for a symbolic link when
    `follow_symlinks` is False."""
    nofollow = 0 if follow_symlinks else os.O_NOFOLLOW
    # O_NONBLOCK: open() of a FIFO would wait for a writer, for ever.
    fd = os.open(path, flags | nofollow | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "no regular file")
            raise OSError(errno.EINVAL, f"it is {kind}, not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular_file(path: Path, limit: int) -> bytes:
    """Up to `limit` + 1 bytes of regular file `path` (one more than allowed tells the caller it
    is too big). Raises OSError as `open_regular_file` does."""
    with os.fdopen(open_regular_file(path), "rb") as handle:
        return handle.read(limit + 1)


def open_one_time_file(path: Path, writable: bool = False) -> int:
    """A one-time-sequences file's descriptor. Like sshd's StrictModes: the file must be a
    regular file of root's or this process's user that nobody else may write, and a symbolic
    link is never followed, so a planted link cannot make a knock write into another file and
    another user cannot choose which sequences open the door. Raises OSError saying why not."""
    flags = os.O_RDWR if writable else os.O_RDONLY
    try:
        fd = open_regular_file(path, flags, follow_symlinks=False)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "it is a symbolic link; name the file itself") from None
        raise
    try:
        info = os.fstat(fd)
        if info.st_uid not in (0, os.geteuid()):
            raise OSError(errno.EPERM, f"it is owned by uid {info.st_uid}, not by root")
        if info.st_mode & 0o022:
            raise OSError(
                errno.EPERM,
                f"it is writable by group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
                "chmod go-w it",
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


def parse_config(
    text: str,
    file: str = "<config>",
    read_file: ReadFile | None = None,
    host: HostInterfaces | None = None,
) -> LoadedConfig:
    """Parse config text. Raises ConfigError listing every problem; returns warnings otherwise.
    With `host`, `options.interfaces` must name its interfaces (but late_interfaces)."""
    reader: ReadFile = read_file or read_text_file
    w = Walker(file)
    root = compose_yaml(text, file)
    if root is None:
        raise ConfigError([Problem(file, 1, "", "the file is empty", "see config.example.yaml")])
    top = w.mapping(root, "", ("options", "doors"))
    options_node = top["options"][1] if "options" in top else None
    options = parse_options(w, options_node, host, reader)
    doors: list[tuple[Door, yaml.Node]] = []
    if "doors" not in top:
        if not w.errors:
            w.error(
                root,
                "doors",
                "no doors are defined",
                "add a doors: section; see config.example.yaml",
            )
    else:
        doors_node = top["doors"][1]
        door_nodes = w.mapping(doors_node, "doors", None)
        if len(door_nodes) > MAX_DOORS:
            raise ConfigError(
                [Problem(file, line_of(doors_node), "doors", f"more than {MAX_DOORS} doors")]
            )
        for name, (name_node, door_node) in door_nodes.items():
            door = parse_door(w, name, name_node, door_node, reader)
            if door is not None:
                doors.append((door, name_node))
        if isinstance(doors_node, yaml.MappingNode) and not doors_node.value:
            w.error(doors_node, "doors", "no doors are defined", "add at least one door")
    if not w.errors:
        check_doors(w, doors)
        check_rate_limit(w, options, [d for d, _ in doors], options_node)
        check_spa(w, options, doors, options_node)
    if w.errors:
        raise ConfigError(w.errors)
    config = Config(options, tuple(d for d, _ in doors), file)
    return LoadedConfig(config, tuple(w.warnings))


def load_config(path: Path, host: HostInterfaces | None = None) -> LoadedConfig:
    """Read and parse a config file; an unreadable file is a ConfigError like any other."""
    return parse_config(read_config_text(path), str(path), host=host)


def read_config_text(
    path: Path,
    what: str = "the config",
    hint: str = "check the path (-c FILE) and that you may read it",
) -> str:
    """A config file's text (YAML or knockd.conf): a regular file, UTF-8, at most
    MAX_CONFIG_BYTES."""
    try:
        data = read_regular_file(path, MAX_CONFIG_BYTES)
    except OSError as exc:
        raise ConfigError(
            [
                Problem(
                    str(path),
                    None,
                    "",
                    f"cannot read {what}: {exc.strerror or exc}",
                    hint,
                )
            ]
        ) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            [Problem(str(path), 1, "", f"{what} is bigger than {MAX_CONFIG_BYTES} bytes")]
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            [
                Problem(
                    str(path),
                    line,
                    "",
                    f"not UTF-8 text: byte 0x{data[exc.start]:02x} ({exc.reason})",
                    "save the file as UTF-8",
                )
            ]
        ) from None
