"""The files of a pending `apply --confirm`, in state_dir, and the lock that serialises
`apply --confirm`, `confirm` and the watcher (knocknft.admin.confirm says what each holds).

Every file is read as hostile: size-limited, strictly typed, finite numbers in range; a damaged
one is set aside (knocknft.files) and ignored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from knocknft.errors import KnocknftError
from knocknft.files import (
    DamagedFile,
    check_state_dir,
    finite,
    parse_json,
    read_text,
    set_aside,
    write_atomic,
)

log = logging.getLogger("knocknft")

MARKER = "confirm.json"
ROLLBACK = "rollback.nft"
LOCK = "confirm.lock"
LOG = "confirm.log"
OUTCOME = "rolled-back.json"

# What a marker may hold: anything beyond is damage, not something `apply --confirm` wrote.
MAX_PID = 1 << 22  # the kernel's ceiling for pid_max
MAX_CONFIRM_SECONDS = 366 * 86400
MAX_WALL_CLOCK = float(1 << 40)


def boottime() -> float:
    """A clock every process shares that NTP never steps: deadlines survive a clock change."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


@dataclass(frozen=True)
class Pending:
    """The marker: an applied change that is rolled back at `deadline` unless confirmed."""

    table: str
    seconds: int
    deadline: float  # boottime()
    due_at: float  # wall clock, for people
    saved_at: float  # wall clock: when the rollback point was saved
    had_table: bool  # False: the rollback deletes the table
    watcher: int = 0
    log_file: str | None = None
    syslog: bool = False

    @classmethod
    def from_json(cls, data: Any, now: float) -> Pending:
        """The marker as `write_pending` wrote it, `now` being boottime(); DamagedFile if it
        is not: a wrong type, a time that is not finite, a deadline further than its own
        `seconds` from now (a watcher would wait for it forever)."""
        if not isinstance(data, dict):
            raise DamagedFile("not an object")
        fields = {f.name for f in dataclasses.fields(cls)}
        try:
            pending = cls(**{k: v for k, v in data.items() if k in fields})
        except TypeError as exc:  # a field missing
            raise DamagedFile(str(exc)) from exc
        if not isinstance(pending.table, str) or not isinstance(pending.seconds, int):
            raise DamagedFile("table or seconds of the wrong type")
        if not isinstance(pending.had_table, bool) or not isinstance(pending.syslog, bool):
            raise DamagedFile("had_table or syslog of the wrong type")
        if pending.log_file is not None and not isinstance(pending.log_file, str):
            raise DamagedFile("log_file of the wrong type")
        finite(pending.watcher, 0, MAX_PID)
        if not isinstance(pending.watcher, int):
            raise DamagedFile("watcher is not a process id")
        finite(pending.seconds, 1, MAX_CONFIRM_SECONDS)
        finite(pending.deadline, 0, now + pending.seconds)
        finite(pending.due_at, 0, MAX_WALL_CLOCK)
        finite(pending.saved_at, 0, MAX_WALL_CLOCK)
        return pending


class StateDir:
    """The confirmation's files in state_dir, and the lock that orders their changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.marker = path / MARKER
        self.rollback = path / ROLLBACK
        self.log = path / LOG
        self.outcome = path / OUTCOME
        # Set when read_pending found the marker damaged (and set it aside): the watcher then
        # rolls back, as nobody confirmed.
        self.damaged = False

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the lock; a file that cannot be written in here is a KnocknftError, and so is
        a state dir that cannot be trusted (UnsafeStateDir)."""
        check_state_dir(self.path)
        try:
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(self.path / LOCK, flags, 0o600)
        except OSError as exc:
            raise KnocknftError(f"state directory {self.path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        except OSError as exc:
            raise KnocknftError(
                f"{exc.filename or self.path}: {exc.strerror or exc}; nothing was changed"
            ) from exc
        finally:
            os.close(fd)

    def read_pending(self) -> Pending | None:
        """The marker, or None. A damaged one is logged, set aside and treated as none
        (`damaged` says so)."""
        try:
            return Pending.from_json(parse_json(read_text(self.marker)), boottime())
        except FileNotFoundError:
            return None
        except (OSError, DamagedFile) as exc:
            aside = set_aside(self.marker)
            self.damaged = True
            log.error(
                "%s is damaged (%s); %s; ignoring it",
                self.marker,
                exc,
                f"set aside as {aside.name}" if aside else "it could not be set aside",
            )
            return None

    def write_pending(self, pending: Pending) -> None:
        write_atomic(self.marker, json.dumps(dataclasses.asdict(pending), indent=1) + "\n")

    def clear(self) -> None:
        for path in (self.marker, self.rollback):
            path.unlink(missing_ok=True)

    def read_rollback(self) -> str:
        """The saved table; OSError or DamagedFile (a ValueError) if it cannot be read."""
        return read_text(self.rollback)

    def read_outcome(self) -> dict[str, Any] | None:
        """What the last rollback did; None if there is none or it is not what a watcher
        wrote (only shown to people, so left in place)."""
        try:
            data = parse_json(read_text(self.outcome, 1 << 16))
        except (OSError, DamagedFile):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("message"), str):
            return None
        return data
