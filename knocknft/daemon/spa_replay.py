"""The SPA replay cache on disk: state_dir/spa-replay.json, so a restart forgets no packet that
could still be replayed.

The file is written whole (files.write_atomic: fsynced, renamed into place) after each accepted
request and before its grant: a grant is never given for a packet the file does not hold. It
holds each accepted packet's digest with the time it may be forgotten (its timestamp plus the
window), and the window it was written under: a daemon started with a longer window keeps every
digest longer by the difference, since each packet is then valid for longer.

Fail closed. A missing file is a first start: an empty cache. A file that cannot be read or
trusted (damaged, not what knocknft writes, unreadable) says nothing about which packets were
accepted, and any packet accepted before it was lost could be replayed while still within its
window. The damaged file is set aside (NAME.damaged-<time>) and, for two windows from the start,
no SPA request opens anything: a packet is valid for one window either side of its timestamp, so
every packet accepted before the start is out of its window by then. Knock doors work as ever.
That refusal is written in a new file at once (`refuse_until`), so a restart within it keeps it;
if the new file cannot be written, the damaged one is put back, and refuses again at the next
start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from knocknft.config import DEFAULT_SPA_REPLAY_CACHE
from knocknft.files import (
    MAX_STATE_FILE,
    DamagedFile,
    finite,
    parse_json,
    read_state,
    set_aside,
    write_atomic,
)

log = logging.getLogger("knocknft")

REPLAY_FILE = "spa-replay.json"
# A digest is a hash (fwknop's SHA-256 of the packet, our own's): 64 bytes at most.
_MAX_DIGEST = 64
# One entry as save_replay writes it, at most: the digest in hex, a time, the JSON around them.
_MAX_ENTRY_TEXT = 2 * _MAX_DIGEST + 32
_MAX_TIME = float(1 << 40)
_MAX_WINDOW = 1 << 31

Entry = tuple[bytes, float]  # (digest, forget after), as knocknft.spa.replay.ReplayCache keeps them


@dataclass(frozen=True)
class Loaded:
    """What the file held: the entries to keep, and until when SPA must refuse (None: it need
    not) because the file was damaged."""

    entries: list[Entry]
    refuse_until: float | None = None


def replay_path(state_dir: Path) -> Path:
    return state_dir / REPLAY_FILE


def load_replay(
    path: Path, window: int, now: float, capacity: int = DEFAULT_SPA_REPLAY_CACHE
) -> Loaded:
    """The entries of `path` still to be kept at `now`, under `window`, for a cache of
    `capacity`; see the module's text."""
    # What a cache of `capacity` can write (twice: digests read back at start are kept beside
    # a full cache's, knocknft.spa.replay), so that a big cache, full, is not read back as
    # damaged and SPA shut for two windows.
    limit = max(MAX_STATE_FILE, 2 * capacity * _MAX_ENTRY_TEXT)
    try:
        entries, refuse_until = _parse(parse_json(read_state(path, limit)), window)
    except FileNotFoundError:
        return Loaded([])
    except (OSError, DamagedFile) as exc:
        until = now + 2 * window
        aside = _replace_damaged(path, window, until) if isinstance(exc, DamagedFile) else None
        log.error(
            "%s cannot be trusted (%s)%s: a packet accepted before it was lost could be replayed, "
            "so no SPA request opens anything for %ds (two windows); knock doors are not affected",
            path,
            exc.strerror if isinstance(exc, OSError) and exc.strerror else exc,
            f"; set aside as {aside.name}" if aside is not None else "",
            2 * window,
        )
        return Loaded([], until)
    # Kept through `until` itself, as the cache keeps them (knocknft.spa.replay).
    live = [(digest, until) for digest, until in entries if until >= now]
    if refuse_until is not None and refuse_until > now:
        log.error(
            "%s: a damaged replay file was set aside at a start before; no SPA request opens "
            "anything for %ds more; knock doors are not affected",
            path,
            refuse_until - now,
        )
        return Loaded(live, refuse_until)
    return Loaded(live)


def save_replay(
    path: Path, entries: Sequence[Entry], window: int, refuse_until: float | None = None
) -> None:
    """Write the cache whole, atomically; OSError if it cannot be (the caller refuses the grant).
    `refuse_until`: the end of a damaged file's refusal, for a restart before it."""
    digests = [[digest.hex(), round(until, 3)] for digest, until in entries]
    content: dict[str, object] = {"window": window, "digests": digests}
    if refuse_until is not None:
        content["refuse_until"] = round(refuse_until, 3)
    write_atomic(path, json.dumps(content, separators=(",", ":")))


def _replace_damaged(path: Path, window: int, until: float) -> Path | None:
    """Set the damaged file aside and write one that refuses until `until`; where it was set
    aside, or None. If the new file cannot be written, the damaged one goes back in place: a
    missing file would be trusted as a first start."""
    aside = set_aside(path)
    if aside is None:
        return None  # left in place: it refuses again at the next start
    try:
        save_replay(path, [], window, refuse_until=until)
    except OSError:
        with contextlib.suppress(OSError):
            os.rename(aside, path)
        return None
    return aside


def _parse(raw: object, window: int) -> tuple[list[Entry], float | None]:
    if not isinstance(raw, dict) or not isinstance(raw.get("digests"), list):
        raise DamagedFile("not an object with a list of digests")
    refuse_until = None
    if "refuse_until" in raw:
        refuse_until = finite(raw["refuse_until"], 0, _MAX_TIME)
    written = finite(raw.get("window"), 1, _MAX_WINDOW)
    # Each packet is valid for longer under a longer window: remember it longer by as much.
    longer = max(0.0, window - written)
    entries: list[Entry] = []
    for item in raw["digests"]:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            raise DamagedFile(f"{item!r:.80} is not [digest, time]")
        try:
            digest = bytes.fromhex(item[0])
        except ValueError as exc:
            raise DamagedFile(f"{item[0]!r:.80} is not a hex digest") from exc
        if not 0 < len(digest) <= _MAX_DIGEST:
            raise DamagedFile(f"{item[0]!r:.80} is not a digest")
        entries.append((digest, finite(item[1], 0, _MAX_TIME) + longer))
    return entries, refuse_until
