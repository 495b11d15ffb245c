"""Pending stop commands, kept on disk so a restart or SIGKILL cannot lose one (knockd defect 4).

A record is (door, address, due) and nothing else: the command is never read back from disk, so
a record planted in the state dir cannot run anything the config does not say. The command is
the one rendered when the stop was scheduled (it undoes the start command that ran); a record
that came from disk after a restart gets the running config's command for its door.

The file is a journal, one JSON line per change, so the cost of a knock does not grow with the
number of pending stops (a flood of spoofed completions wrote and fsynced the whole file per
knock, O(n^2)):

    ["S", due, "198.18.0.2", "door"]    the stop for (door, address) runs at `due`; the last
                                        line for a key wins
    ["D", due, "198.18.0.2", "door"]    the same line once the stop was taken out to run: the
                                        "S" is overwritten in place, which needs no free space,
                                        so a full disk cannot make a stop run twice

What survives what: a line is written (write(2)) before the start command it pairs with is
started, so a SIGKILL or a crash of the daemon never loses a stop; fsync follows within
SYNC_INTERVAL, so a power loss loses at most that last second of records (and with it, as a
rule, the firewall rules those start commands added). A due stop is marked and fsynced before
it runs. The journal is compacted (written whole, atomically) when it holds more than twice the
live records plus COMPACT_SLACK lines: amortised O(1) per change.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from knocknft.config import IPAddress
from knocknft.files import (
    DamagedFile,
    check_state_dir,
    finite,
    parse_json,
    read_state,
    set_aside,
    write_atomic,
)

log = logging.getLogger("knocknft")

STATE_FILE = "pending-stops.jsonl"
# The whole-file format before the journal: read once, then replaced by the journal.
LEGACY_FILE = "pending-stops.json"
# Records fsynced at most this often (seconds): the bound on what a power loss can lose.
SYNC_INTERVAL = 1.0
COMPACT_SLACK = 1024
# A due time further ahead than this is damage, not a stop command anyone scheduled.
MAX_DELAY = 366 * 86400
_MAX_NAME = 256


@dataclass(frozen=True)
class PendingStop:
    door: str
    address: str
    due: float  # wall-clock seconds: survives a restart, unlike a monotonic clock
    # The rendered command, when this process scheduled it; None for a record read from disk.
    command: str | None = None


@dataclass
class _Entry:
    stop: PendingStop
    offset: int  # where its line starts in the journal; -1: not in the file


class PendingStops:
    def __init__(self, path: Path | None) -> None:
        self.path = path  # None: keep in memory only (tests, or no writable state dir)
        self._items: dict[tuple[str, str], _Entry] = {}
        self._fd = -1
        self._size = 0  # the journal's length: where the next line goes
        self._lines = 0
        self._dirty = False  # written, not yet fsynced
        self._synced = 0.0
        self._failing = False  # the last write failed: said once until one succeeds

    # -- start-up ---------------------------------------------------------------------------------

    def load(self, now: float) -> None:
        """Read the journal (or the legacy file). A damaged one is logged, set aside as
        `NAME.damaged-<time>`, and its valid records kept; a damaged record is never run.
        Raises UnsafeStateDir if the state dir cannot be trusted."""
        if self.path is None:
            return
        check_state_dir(self.path.parent)
        self._synced = now
        legacy = self.path.with_name(LEGACY_FILE)
        which = self.path
        damaged = self._read_journal(now)
        if not self._items and not damaged and legacy.exists():
            which = legacy
            damaged = self._read_legacy(legacy, now)
        if damaged:
            aside = set_aside(which)
            log.error(
                "%s is damaged (%s); %s; %d valid stop record(s) kept",
                which,
                damaged,
                f"set aside as {aside.name}" if aside else "it could not be set aside",
                len(self._items),
            )
        if damaged or legacy.exists() or self._fd < 0:
            self._compact()
        if legacy.exists() and self._fd >= 0:
            legacy.unlink()

    def _read_journal(self, now: float) -> str:
        assert self.path is not None
        try:
            data = read_state(self.path)
        except FileNotFoundError:
            return ""
        except (OSError, DamagedFile) as exc:
            return str(exc)
        bad = 0
        offset = 0
        for line in data.split(b"\n"):
            start, offset = offset, offset + len(line) + 1
            if not line:
                continue
            try:
                mark, stop = _parse_line(parse_json(line), now)
            except (DamagedFile, ValueError):
                bad += 1
                continue
            key = (stop.door, stop.address)
            if mark == "S":
                self._items[key] = _Entry(stop, start)
            else:
                self._items.pop(key, None)
        if data and not data.endswith(b"\n"):
            bad += 1  # a torn last line: the next one must not be glued to it
        if bad:
            return f"{bad} line(s) that are not stop records"
        self._open_journal(len(data), data.count(b"\n"))
        return ""

    def _read_legacy(self, legacy: Path, now: float) -> str:
        try:
            raw = parse_json(read_state(legacy))
        except FileNotFoundError:
            return ""
        except (OSError, DamagedFile) as exc:
            return str(exc)
        items = raw.get("pending") if isinstance(raw, dict) else None
        if not isinstance(items, list):
            return "not an object with a list of pending stops"
        bad = 0
        for item in items:
            try:
                if not isinstance(item, dict):
                    raise DamagedFile("not an object")
                _, stop = _parse_line(
                    ["S", item.get("due"), item.get("address"), item.get("door")], now
                )
            except (DamagedFile, ValueError):
                bad += 1
                continue
            self._items[(stop.door, stop.address)] = _Entry(stop, -1)
        return f"{bad} record(s) that are not stop records" if bad else ""

    # -- what decide reads ------------------------------------------------------------------------

    def is_pending(self, door: str, address: IPAddress) -> bool:
        return (door, address.compressed) in self._items

    def next_due(self) -> float | None:
        """The next stop's due time, or the next fsync's when records wait for one."""
        due = min((e.stop.due for e in self._items.values()), default=None)
        if self._dirty:
            sync = self._synced + SYNC_INTERVAL
            return sync if due is None else min(due, sync)
        return due

    def __len__(self) -> int:
        return len(self._items)

    # -- changes ----------------------------------------------------------------------------------

    def schedule(self, door: str, address: IPAddress, due: float, command: str) -> bool:
        """Record the stop command for (door, address), to run at `due`.

        Returns whether the record is in the file (written, fsync pending); False: it is kept
        in memory only, and a restart would lose it."""
        stop = PendingStop(door, address.compressed, due, command)
        return self._put(stop)

    def extend(self, door: str, address: IPAddress, due: float) -> bool:
        """The refresh: the stop pending for (door, address) runs at `due` instead; it keeps its
        command (the one that undoes the start command that ran)."""
        entry = self._items.get((door, address.compressed))
        if entry is None:
            return False
        return self._put(PendingStop(door, address.compressed, due, entry.stop.command))

    def take_due(self, now: float) -> list[PendingStop]:
        """Remove and return every stop due by `now`, oldest first: marked done in the file and
        fsynced before anyone runs them. If that cannot be written they are handed out all the
        same (the close must happen) and the failure is logged: after a restart they may run
        again."""
        due = [e for e in self._items.values() if e.stop.due <= now]
        if not due:
            return []
        for e in due:
            del self._items[(e.stop.door, e.stop.address)]
        self._mark_done([e.offset for e in due])
        return sorted((e.stop for e in due), key=lambda s: s.due)

    def sync(self, now: float) -> None:
        """fsync what was written since the last one, at most every SYNC_INTERVAL: the timer
        calls this (next_due includes its time)."""
        if self._dirty and now >= self._synced + SYNC_INTERVAL:
            self._fsync(now)

    def close(self) -> None:
        if self._fd >= 0:
            if self._dirty:
                self._fsync(time.time())
            os.close(self._fd)
            self._fd = -1

    # -- the journal ------------------------------------------------------------------------------

    def _put(self, stop: PendingStop) -> bool:
        key = (stop.door, stop.address)
        old = self._items.get(key)
        # Until the new line is in, the old one is the key's line in the file.
        entry = _Entry(stop, -1 if old is None else old.offset)
        self._items[key] = entry
        if self._fd < 0:
            return self.path is None
        if self._lines > 2 * len(self._items) + COMPACT_SLACK and self._compact():
            return True
        line = _line("S", stop)
        try:
            written = os.pwrite(self._fd, line, self._size)
            if written != len(line):
                raise OSError(28, "short write (disk full?)")
        except OSError as exc:
            self._write_failed(exc, "a stop record is kept in memory only until it is due")
            # A partial line would glue the next one to it: start the journal over.
            self._truncate_to(self._size)
            return False
        entry.offset = self._size
        self._size += len(line)
        self._lines += 1
        self._dirty = True
        self._failing = False
        return True

    def _mark_done(self, offsets: list[int]) -> bool:
        if self._fd < 0:
            return self.path is None
        try:
            for offset in offsets:
                if offset >= 0:
                    # In place: `["S"` becomes `["D"`, which no full disk can refuse.
                    os.pwrite(self._fd, b"D", offset + 2)
            os.fsync(self._fd)
        except OSError as exc:
            self._write_failed(exc, "a stop command may run again after a restart")
            return False
        self._dirty = False
        self._synced = time.time()
        return True

    def _fsync(self, now: float) -> None:
        try:
            os.fsync(self._fd)
        except OSError as exc:
            self._write_failed(exc, "a power loss may lose the latest stop records")
            return
        self._dirty = False
        self._synced = now

    def _compact(self) -> bool:
        """Write the live records as a fresh journal (atomically) and append to it from now."""
        assert self.path is not None
        stops = sorted((e.stop for e in self._items.values()), key=lambda s: s.due)
        lines = [_line("S", s) for s in stops]
        try:
            write_atomic(self.path, b"".join(lines))
        except OSError as exc:
            self._write_failed(exc, "stop records are kept in memory only until they are due")
            return False
        offset = 0
        for stop, line in zip(stops, lines, strict=True):
            self._items[(stop.door, stop.address)].offset = offset
            offset += len(line)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._open_journal(offset, len(lines))
        self._failing = False
        return self._fd >= 0

    def _open_journal(self, size: int, lines: int) -> None:
        assert self.path is not None
        try:
            # Not O_APPEND: Linux's pwrite() ignores its offset on such a descriptor.
            self._fd = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            self._write_failed(exc, "stop records are kept in memory only until they are due")
            return
        self._size, self._lines = size, lines

    def _truncate_to(self, size: int) -> None:
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, size)

    def _write_failed(self, exc: OSError, consequence: str) -> None:
        if not self._failing:
            self._failing = True
            log.error("cannot write %s: %s: %s", self.path, exc.strerror or exc, consequence)


def _line(mark: str, stop: PendingStop) -> bytes:
    return (json.dumps([mark, stop.due, stop.address, stop.door]) + "\n").encode("utf-8")


def _parse_line(raw: object, now: float) -> tuple[str, PendingStop]:
    """One journal line -> its mark and record; DamagedFile (or ValueError) if it is not one."""
    if not isinstance(raw, list) or len(raw) != 4 or raw[0] not in ("S", "D"):
        raise DamagedFile("not a stop record")
    mark, due, address, door = raw
    if not isinstance(door, str) or not door or len(door) > _MAX_NAME:
        raise DamagedFile("no door name")
    if not isinstance(address, str) or len(address) > _MAX_NAME:
        raise DamagedFile("no address")
    parsed = ipaddress.ip_address(address)  # ValueError if it is not one
    # A due time before the epoch or beyond MAX_DELAY from now is no time knocknft wrote.
    return mark, PendingStop(door, parsed.compressed, finite(due, 0.0, now + MAX_DELAY))
