"""The event log: one JSON object per line for what an admin audits afterwards (doors opened,
grants given or refused, doors closed, stop commands falling due, commands and how they
ended, doors disabled), never one per knock: a flood of forged knocks writes nothing here.

Lines are appended through logging's WatchedFileHandler: whole lines under its lock (command
results arrive from the runner's worker threads), and the file is reopened after logrotate
moves it. It names who got in when, and the commands run: created 0600 (logs.PrivateFileHandler).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from knocknft.daemon.commands import CommandResult
from knocknft.daemon.logs import PrivateFileHandler
from knocknft.errors import KnocknftError

log = logging.getLogger("knocknft")


class _JsonLines(PrivateFileHandler):
    failed = False

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        # A full disk must not print a traceback per event: say it once, in the daemon's log.
        if not self.failed:
            self.failed = True
            log.error("cannot write the event log %s: %s", self.baseFilename, sys.exc_info()[1])


class EventLog:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handler = _JsonLines(path, encoding="utf-8")
        except OSError as exc:
            raise KnocknftError(
                f"options.event_log: cannot open {path}: {exc.strerror or exc}"
            ) from exc

    def write(self, event: str, **fields: object) -> None:
        """One line: {"time": ISO 8601 with the local offset, "event": event, **fields};
        addresses and services are written as their text."""
        stamp = datetime.fromtimestamp(self._clock()).astimezone()
        line = json.dumps(
            {"time": stamp.isoformat(timespec="milliseconds"), "event": event, **fields},
            default=str,
        )
        self._handler.handle(logging.makeLogRecord({"msg": line, "args": None}))

    def command(self, result: CommandResult) -> None:
        """A command has ended: its exit status, or null when it was killed or did not start."""
        self.write(
            "command",
            door=result.door,
            command=result.command,
            exit=result.returncode,
            error=result.error or None,
        )

    def close(self) -> None:
        self._handler.close()
