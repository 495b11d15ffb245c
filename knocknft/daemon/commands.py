"""knockd-style commands: a runner that never blocks the packet loop.

Commands come already expanded (`knocknft.core.decide.expand_command`: the address substituted
for `%IP%` is always an `ipaddress` object's text, decoded from the packet's header bytes:
digits, dots, colons and hex letters, never text taken from a payload). They run through /bin/sh
as knockd runs them, each in its own process group (so a time limit can kill everything it
started), on a few worker threads. Unlike knockd, which forks each command and lets them race,
the commands of one client run in the order they were asked for: a closing door's `iptables -D`
never overtakes the opening door's `-I`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("knocknft")

DEFAULT_TIME_LIMIT = 60.0


@dataclass(frozen=True)
class CommandResult:
    door: str
    command: str
    returncode: int | None  # None: killed at the time limit, or could not start
    error: str = ""


class CommandRunner(Protocol):
    def submit(self, door: str, command: str, client: str = "") -> None:
        """Start `command` for `door` and return at once; one client's commands run in order."""

    def close(self) -> None:
        """Wait for running commands (up to their time limit)."""


class ShellRunner:
    """Runs commands with /bin/sh on worker threads; logs each start and its exit status."""

    def __init__(
        self,
        time_limit: float = DEFAULT_TIME_LIMIT,
        workers: int = 4,
        on_done: Callable[[CommandResult], None] | None = None,
    ) -> None:
        self.time_limit = time_limit
        # Told of every command's end, on the worker thread that ran it (the event log).
        self._on_done = on_done
        # One single-thread lane per worker, a client always on the same lane: order per client,
        # and a slow command holds up only the clients that share its lane.
        self._lanes = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"command-{i}")
            for i in range(workers)
        ]
        self._lock = threading.Lock()
        self.failed = 0
        self.completed = 0

    def submit(self, door: str, command: str, client: str = "") -> None:
        log.info("%s: running command: %s", door, command)
        self._lanes[self.lane_of(client)].submit(self._run, door, command)

    def lane_of(self, client: str) -> int:
        """The worker lane a client's commands run on, the same for the daemon's whole life."""
        return zlib.crc32(client.encode()) % len(self._lanes)

    def _run(self, door: str, command: str) -> CommandResult:
        try:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", command],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            return self._done(CommandResult(door, command, None, f"cannot start: {exc}"))
        try:
            _, err = proc.communicate(timeout=self.time_limit)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            return self._done(
                CommandResult(door, command, None, f"killed after {self.time_limit:g}s time limit")
            )
        text = err.decode("utf-8", "replace").strip()[-500:]
        return self._done(CommandResult(door, command, proc.returncode, text))

    def _done(self, result: CommandResult) -> CommandResult:
        with self._lock:
            self.completed += 1
            if result.returncode != 0:
                self.failed += 1
        if result.returncode == 0:
            log.info("%s: command exited 0", result.door)
        elif result.returncode is None:
            log.error("%s: command failed: %s: %s", result.door, result.error, result.command)
        else:
            detail = f": {result.error}" if result.error else ""
            log.warning(
                "%s: command returned non-zero status code (%d)%s",
                result.door,
                result.returncode,
                detail,
            )
        if self._on_done is not None:
            self._on_done(result)
        return result

    def close(self) -> None:
        for lane in self._lanes:
            lane.shutdown(wait=True)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
