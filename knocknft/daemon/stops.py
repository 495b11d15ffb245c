"""Pending stop commands, kept on disk so a restart or SIGKILL cannot lose one (knockd defect 4).

The file is rewritten atomically (write, fsync, rename) on every change. A due command is taken
out of the file *before* it runs: after a crash it may at worst not run, but it never runs twice.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from knocknft.config import IPAddress
from knocknft.files import write_atomic

log = logging.getLogger("knocknft")

STATE_FILE = "pending-stops.json"


@dataclass(frozen=True)
class PendingStop:
    door: str
    address: str
    command: str
    due: float  # wall-clock seconds: survives a restart, unlike a monotonic clock


class PendingStops:
    def __init__(self, path: Path | None) -> None:
        self.path = path  # None: keep in memory only (tests, or no writable state dir)
        self._items: dict[tuple[str, str], PendingStop] = {}

    def load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            items = [PendingStop(**item) for item in raw.get("pending", [])]
        except (OSError, ValueError, TypeError) as exc:
            log.error("cannot read %s (%s); starting with no pending stop commands", self.path, exc)
            return
        for item in items:
            self._items[(item.door, item.address)] = item

    def is_pending(self, door: str, address: IPAddress) -> bool:
        return (door, address.compressed) in self._items

    def schedule(self, door: str, address: IPAddress, command: str, due: float) -> None:
        """Add, or push back the due time of, the stop command for (door, address)."""
        self._items[(door, address.compressed)] = PendingStop(
            door, address.compressed, command, due
        )
        self._save()

    def take_due(self, now: float) -> list[PendingStop]:
        """Remove and return every command due by `now`, persisting the removal first."""
        due = [p for p in self._items.values() if p.due <= now]
        if not due:
            return []
        for p in due:
            del self._items[(p.door, p.address)]
        self._save()
        return sorted(due, key=lambda p: p.due)

    def next_due(self) -> float | None:
        return min((p.due for p in self._items.values()), default=None)

    def __len__(self) -> int:
        return len(self._items)

    def _save(self) -> None:
        if self.path is None:
            return
        data = {"pending": [asdict(p) for p in sorted(self._items.values(), key=lambda p: p.due)]}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Private: a stop command may carry what the config keeps secret.
            write_atomic(self.path, json.dumps(data, indent=1))
        except OSError as exc:
            log.error("cannot save pending stop commands to %s: %s", self.path, exc)
