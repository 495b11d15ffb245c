"""The rollback watcher: the process `knocknft apply --confirm` leaves behind, which restores the
saved table at the deadline unless `knocknft confirm` runs first.

`knocknft.admin.confirm.spawn_watcher` starts it as `python -m knocknft.admin.watcher STATE_DIR
READY_FD`, detached from the session; it says `ready PID` on READY_FD once it can reach the kernel,
then waits. Everything it shares with the commands (the state files, the lock, the rollback
itself) is in knocknft.admin.confirm.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from knocknft.admin.confirm import POLL_SECONDS, clock_text, roll_back
from knocknft.admin.confirmfiles import Pending, StateDir, boottime
from knocknft.config import Options
from knocknft.daemon.logs import file_handler, setup_logging
from knocknft.errors import KnocknftError
from knocknft.files import write_atomic
from knocknft.nft.libnft import LibNft, NftSnapshots

log = logging.getLogger("knocknft")


def watch(
    state: StateDir,
    nft: NftSnapshots,
    *,
    clock: Callable[[], float] = boottime,
    wait: Callable[[float], int | None] | None = None,
) -> None:
    """Wait for the deadline, then roll back unless the marker is gone (confirmed).

    SIGTERM or SIGINT while the change is unconfirmed rolls back at once: if a session manager
    kills the watcher with the session, the change goes with it rather than staying unguarded.
    `knocknft confirm` removes the marker before it signals, so its SIGTERM just ends the wait.
    """
    pause = wait or _wait_for_signal
    me = os.getpid()
    announced: float | None = None
    interrupted: str | None = None
    last: Pending | None = None
    while True:
        with state.locked():
            pending = state.read_pending()
            if pending is None and state.damaged and last is not None:
                # Nobody confirmed (confirm removes the marker): what was ours rolls back.
                _roll_back_now(state, last, nft, "the confirmation marker was damaged")
                return
            if pending is None or pending.watcher != me:
                if announced is not None and pending is None:
                    log.info("confirmed: the rollback of the last `apply --confirm` is cancelled")
                return
            last = pending
            if announced is None:
                _log_to(state, pending)
            if pending.due_at != announced:
                announced = pending.due_at
                log.info(
                    "table inet %s is rolled back at %s unless `knocknft confirm` runs",
                    pending.table,
                    clock_text(pending.due_at),
                )
            left = pending.deadline - clock()
            if left <= 0 or interrupted:
                why = interrupted or f"not confirmed within {pending.seconds}s"
                _roll_back_now(state, pending, nft, why)
                return
        signum = pause(min(left, POLL_SECONDS))
        if signum is not None:
            interrupted = f"{signal.Signals(signum).name} before `knocknft confirm`"


def _wait_for_signal(seconds: float) -> int | None:
    info = signal.sigtimedwait({signal.SIGTERM, signal.SIGINT}, seconds)
    return None if info is None else info.si_signo


def _log_to(state: StateDir, pending: Pending) -> None:
    options = Options(
        log_file=Path(pending.log_file) if pending.log_file else None, syslog=pending.syslog
    )
    setup_logging(options).addHandler(file_handler(state.log))


def _roll_back_now(state: StateDir, pending: Pending, nft: NftSnapshots, why: str) -> None:
    table = pending.table
    try:
        saved = state.read_rollback() if pending.had_table else None
        result = roll_back(nft, table, saved)
    except (OSError, ValueError, KnocknftError) as exc:  # ValueError: DamagedFile
        _record(
            state,
            f"{why}: rolling back table inet {table} FAILED, it stays as applied ({exc}); "
            f"the saved table stays in {state.rollback}",
        )
        return
    if result.deleted:
        message = (
            f"{why}: table inet {table} DELETED, as there was none before `apply --confirm` "
            f"({result.dropped} grant(s) in it dropped)"
        )
    else:
        message = (
            f"{why}: table inet {table} rolled back to the ruleset saved at "
            f"{clock_text(pending.saved_at)} ({result.kept} grant(s) kept)"
        )
    _record(state, message, ok=True)


def _record(state: StateDir, message: str, ok: bool = False) -> None:
    (log.warning if ok else log.error)("%s", message)
    outcome = {"at": time.time(), "ok": ok, "message": message}
    with contextlib.suppress(OSError):
        write_atomic(state.outcome, json.dumps(outcome) + "\n")
    if ok:
        state.clear()
    else:
        state.marker.unlink(missing_ok=True)  # the saved table stays, for a hand to load


def main(argv: list[str]) -> int:
    """`python -m knocknft.admin.watcher STATE_DIR READY_FD`: the watcher, as spawn_watcher
    starts it."""
    state_dir, ready_fd = Path(argv[0]), int(argv[1])
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # Blocked, so they wait for sigtimedwait() instead of killing the watcher mid-rollback.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    try:
        # Now, not at the deadline: a watcher that could not roll back must not report ready.
        nft = LibNft()
    except KnocknftError as exc:
        _tell(ready_fd, str(exc))
        return 1
    _tell(ready_fd, f"ready {os.getpid()}")
    state = StateDir(state_dir)
    # Until the marker names the config's log destinations, at least confirm.log.
    setup_logging(Options()).addHandler(file_handler(state.log))
    try:
        watch(state, nft)
    except Exception:
        log.exception("the rollback watcher failed; nothing was rolled back")
        return 1
    return 0


def _tell(fd: int, message: str) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, f"{message}\n".encode())
    os.close(fd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
