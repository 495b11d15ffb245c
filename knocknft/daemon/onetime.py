"""Marking a used one-time sequence in its file, in knockd's format: the first character of the
used line is overwritten with `#`, in place, so the file keeps its size and line numbers.

The file is opened as the config's reader opens it (no link followed, root's, written by nobody
else: `knocknft.config.open_one_time_file`) and its lines are found as the reader numbered them
(`one_time_line_starts`). The mark is fsynced and read back before it counts, and a knock's
opening waits for it (`mark_first`), so a sequence whose mark did not reach the disk opens
nothing, now or after a restart.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from knocknft.config import one_time_line_starts, open_one_time_file
from knocknft.core.events import Event, OneTimeUsed, Opened

MARK = b"#"


def mark_used(path: Path, line: int) -> None:
    """Overwrite the first character of line `line` (1-based) with '#', durably; OSError if the
    mark is not on disk. Messages name line numbers, never the file's text."""
    fd = open_one_time_file(path, writable=True)
    try:
        size = os.fstat(fd).st_size
        data = os.pread(fd, size, 0)
        starts = one_time_line_starts(data)
        if not 1 <= line <= len(starts):
            raise OSError(errno.EINVAL, f"the file has no line {line} (changed since it was read?)")
        offset = starts[line - 1]
        if offset >= len(data) or data[offset : offset + 1] in (b"\r", b"\n"):
            raise OSError(errno.EINVAL, f"line {line} is empty (changed since it was read?)")
        if os.pwrite(fd, MARK, offset) != 1:
            raise OSError(errno.EIO, "the mark was not written")
        os.fsync(fd)
        if os.pread(fd, 1, offset) != MARK:
            raise OSError(errno.EIO, "the mark did not stay")
    finally:
        os.close(fd)


def mark_first(
    events: Sequence[Event], failed: Callable[[OneTimeUsed, OSError], None]
) -> Sequence[Event]:
    """`events` with each used one-time line marked on disk first, before anything of its
    opening is carried out. A line whose mark fails is reported to `failed` and opens nothing:
    its OneTimeUsed goes, and so does the Opened the engine put just before it (fail closed)."""
    if OneTimeUsed not in set(map(type, events)):
        return events
    kept: list[Event] = []
    for event in events:
        if type(event) is OneTimeUsed:
            path = event.door.one_time_sequences
            try:
                if path is None:
                    raise OSError(errno.EINVAL, "the door has no one-time file")
                mark_used(path, event.line)
            except OSError as exc:
                failed(event, exc)
                if kept and type(kept[-1]) is Opened and kept[-1].door.name == event.door.name:
                    kept.pop()
                continue
        kept.append(event)
    return kept
