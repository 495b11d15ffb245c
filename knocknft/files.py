"""The state directory's files: checked, written atomically, read and set aside without ever
following a link an attacker could have planted.

knocknft runs as root and keeps in options.state_dir what decides who gets in (pending stop
records, the boot guard's table, the commit-confirmed rollback). A directory someone else owns
or can write is refused, as sshd's StrictModes refuses such a home directory: whoever can write
it could plant a record, or a symlink that makes root write over another file. Writes go
through a descriptor of the directory opened with O_NOFOLLOW, reads open with O_NOFOLLOW, and a
state file that does not parse is renamed aside (`NAME.damaged-<time>`) for the admin to look at.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import stat
import time
from pathlib import Path
from typing import Any

from knocknft.errors import KnocknftError

# The state dir holds knock sequences (in the boot guard's script): root only.
STATE_DIR_MODE = 0o700
# No state file is anywhere near this; a bigger one is damage, not something to read into memory.
MAX_STATE_FILE = 64 << 20

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeStateDir(KnocknftError, PermissionError):
    """The state directory (or a directory above it) is a link, or is owned or writable by
    another user: what is in it cannot be trusted. A PermissionError too, so code that reports
    a state file it cannot write reports this the same way."""


class DamagedFile(ValueError):
    """A state file that cannot be what knocknft wrote: not text, not JSON, a wrong type, a
    number that is not finite or out of range."""


def check_state_dir(path: Path, *, create: bool = True) -> None:
    """Refuse a state directory that another user could have written, as sshd's StrictModes does.

    The directory must be a real directory (not a link), owned by us, and not writable by group
    or others; so must every directory above it, except root-owned sticky ones such as /tmp
    (there nobody else can rename or remove our entry). Created 0700 if it does not exist and
    `create` is true; without `create`, a missing one raises FileNotFoundError.
    """
    path = path.absolute()
    if create:
        try:
            path.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
        except FileExistsError:
            pass  # not a directory: said below
        except OSError as exc:
            raise UnsafeStateDir(f"state directory {path}: {exc.strerror or exc}") from exc
    me = os.geteuid()
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise  # (only without `create`) not there yet: the caller says what that means
    except OSError as exc:
        raise UnsafeStateDir(f"state directory {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeStateDir(f"state directory {path} is not a directory (a symlink?): refusing it")
    _check_owner(path, st, me, "state directory")
    for parent in path.parents:
        try:
            up = os.stat(parent)
        except OSError as exc:
            raise UnsafeStateDir(f"{parent}: {exc.strerror or exc}") from exc
        if up.st_uid == 0 and up.st_mode & stat.S_ISVTX:
            continue  # /tmp and its kind: others may add entries, not touch ours
        _check_owner(parent, up, me, f"{path}'s parent")


def _check_owner(path: Path, st: os.stat_result, me: int, what: str) -> None:
    if st.st_uid not in (me, 0):
        raise UnsafeStateDir(
            f"{what} {path} is owned by uid {st.st_uid}, not by us (uid {me}): refusing to "
            f"trust it; chown {me} {path}"
        )
    if st.st_mode & 0o022:
        raise UnsafeStateDir(
            f"{what} {path} is writable by group or others (mode {st.st_mode & 0o7777:04o}): "
            f"refusing to trust it; chmod go-w {path}"
        )


def open_dir(path: Path) -> int:
    """A descriptor of directory `path`, which must not be a symlink itself."""
    return os.open(path, _DIR_FLAGS)


def write_atomic(path: Path, text: str | bytes, new_mode: int = 0o600) -> None:
    """Write `text` to a new temporary file beside `path`, fsync it, then rename it over `path`.

    Readers see the old content or the new, never half of one. Nothing is followed: the
    directory is opened with O_NOFOLLOW, the temporary file is created with O_EXCL|O_NOFOLLOW
    in it, and the rename replaces a planted symlink rather than the file it points to. The file
    gets `new_mode` whatever the old one had (private by default: a knock sequence is a secret).
    """
    data = text.encode("utf-8") if isinstance(text, str) else text
    dir_fd = open_dir(path.parent)
    try:
        tmp = f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, new_mode, dir_fd=dir_fd)
        try:
            try:
                os.fchmod(fd, new_mode)  # the umask does not decide
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)


def read_state(path: Path, limit: int = MAX_STATE_FILE) -> bytes:
    """The bytes of state file `path`, never through a symlink, never from a FIFO or device.

    Raises FileNotFoundError when it is absent, OSError when it cannot be read, DamagedFile when
    it is not a regular file or is bigger than `limit`.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the name is a symlink
            raise DamagedFile(f"{path} is a symlink") from exc
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DamagedFile(f"{path} is not a regular file")
        if st.st_size > limit:
            raise DamagedFile(f"{path} is {st.st_size} bytes, more than any state file")
        chunks = []
        size = 0
        while chunk := os.read(fd, 1 << 16):
            size += len(chunk)
            if size > limit:
                raise DamagedFile(f"{path} grew past {limit} bytes while read")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(path: Path, limit: int = MAX_STATE_FILE) -> str:
    """read_state as UTF-8 text; bytes that are not UTF-8 are DamagedFile."""
    try:
        return read_state(path, limit).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DamagedFile(f"{path} is not UTF-8 text") from exc


def _no_constant(name: str) -> Any:
    raise DamagedFile(f"{name} is not a number knocknft writes")


def parse_json(data: str | bytes) -> Any:
    """JSON as knocknft writes it: NaN, Infinity and nesting too deep to parse are DamagedFile."""
    try:
        return json.loads(data, parse_constant=_no_constant)
    except RecursionError as exc:
        raise DamagedFile("JSON nested too deep") from exc
    except DamagedFile:
        raise
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both are
        raise DamagedFile(f"not JSON: {exc}") from exc


def finite(value: object, low: float = -math.inf, high: float = math.inf) -> float:
    """`value` if it is a real number (not a bool) between `low` and `high`; else DamagedFile."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DamagedFile(f"{value!r} is not a number")
    number = float(value)
    if not (math.isfinite(number) and low <= number <= high):
        raise DamagedFile(f"{value!r} is out of range")
    return number


def set_aside(path: Path, clock: float | None = None) -> Path | None:
    """Rename a damaged state file to `NAME.damaged-<time>` beside it, so the admin can look at
    it and knocknft never reads it again; None if even that fails (it is then left in place)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(time.time() if clock is None else clock))
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while aside.exists() or aside.is_symlink():
        n += 1
        aside = path.with_name(f"{path.name}.damaged-{stamp}.{n}")
    try:
        os.rename(path, aside)
    except OSError:
        return None
    return aside
