"""Commit-confirmed: `knocknft apply --confirm N` is undone unless `knocknft confirm` follows.

A bad ruleset on a remote machine can cut off the very session that would fix it. So the table
is saved as it is, the new one applied, and a watcher process restores the saved table N
seconds later unless `knocknft confirm` runs first. The watcher is a process of its own (double
fork, new session, stdio on /dev/null), so it outlives the SSH session that started it: that is
the point. This module holds the commands' side and what both sides share; the watcher's own code
is knocknft.admin.watcher.

What "the previous ruleset" is: our table as the kernel had it just before the apply, listed
without set elements (they are the grants, and they stay where they are). When there was no
table, the rollback deletes ours, since that is the state it returns to; it says so loudly.

Grants survive both ways. The saved listing only declares the sets, which keeps the elements
of an existing set, and the rollback empties and deletes the chains the table has at that
moment before loading it, as render_ruleset does; the table itself is never deleted while
there is one to return to.

A second `apply --confirm` while one is pending keeps the rollback point (the last state nobody
has confirmed away from) and restarts the timer with its own N: a router's commit-confirmed does
the same. A plain `apply` is refused meanwhile: it would be undone by the rollback without
saying so.

State, in state_dir; one lock serialises `apply --confirm`, `confirm` and the watcher:

    confirm.json      the pending confirmation: table, deadline, watcher pid
    rollback.nft      the table as it was (absent: there was none)
    confirm.log       the watcher's log (also to the config's log_file and syslog)
    rolled-back.json  what the last rollback did, for a `confirm` that comes too late
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from knocknft.admin.confirmfiles import (
    Pending,
    StateDir,
    boottime,
)
from knocknft.config import Config
from knocknft.core.transaction import Chain, SavedTable, Table, Transaction
from knocknft.daemon.detach import fork_detached, read_until_closed
from knocknft.errors import KnocknftError, TableMissing
from knocknft.files import (
    check_state_dir,
    write_atomic,
)
from knocknft.nft.libnft import NftSnapshots
from knocknft.nft.operations import ApplyResult, apply_config
from knocknft.nft.queries import chain_names, read_grants

log = logging.getLogger("knocknft")


# How often the watcher looks at the marker while it waits: a second `apply --confirm` that
# moves the deadline earlier is honoured within this.
POLL_SECONDS = 1.0
READY_TIMEOUT = 10.0
# What spawn_watcher runs with `python -m`, and how watcher_alive knows a watcher's command line.
WATCHER_MODULE = "knocknft.admin.watcher"


class NothingPending(KnocknftError):
    """`knocknft confirm` found no `apply --confirm` to confirm."""


class ConfirmPending(KnocknftError):
    """A plain `apply` while a confirmation is pending: the rollback would undo it unseen."""


def watcher_alive(pid: int) -> bool:
    """Whether `pid` is still a rollback watcher. Pids are reused, after a reboot by anything,
    the knocknft daemon included, so the command line must be a watcher's."""
    if pid <= 0:
        return False
    try:
        return f"-m\0{WATCHER_MODULE}\0".encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


# -- saving and restoring the table ------------------------------------------------------------


def rollback_transaction(table: str, saved: str, chains: list[str]) -> Transaction:
    """Empty and delete the chains there are now, then declare the saved table.

    The saved listing adds its sets (existing ones keep their elements), chains and rules.
    Every flush comes before any delete, so a jump between our chains never blocks a delete.
    Raises ValueError if `saved` is not a listing of that one table.
    """
    t = Table(table)
    tx = Transaction().add(t)
    for chain in chains:
        tx.flush(Chain(t, chain))
    for chain in chains:
        tx.delete(Chain(t, chain))
    return tx.add(SavedTable(t, saved))


def rollback_script(table: str, saved: str, chains: list[str]) -> str:
    return rollback_transaction(table, saved, chains).render()


def save_table(nft: NftSnapshots, table: str) -> str | None:
    """Our table as a script that restores it, checked by the kernel now; None if absent."""
    try:
        saved = nft.list_text(f"list table inet {table}")
    except TableMissing:
        return None
    try:
        nft.check(rollback_transaction(table, saved, chain_names(nft, table)))
    except (KnocknftError, ValueError) as exc:
        raise KnocknftError(
            f"cannot arm a rollback: table inet {table} as it is now does not load back ({exc}); "
            "nothing was changed"
        ) from exc
    return saved


@dataclass(frozen=True)
class RolledBack:
    kept: int  # grants in the restored table
    deleted: bool  # there was no table before: ours is gone, with `dropped` grants
    dropped: int = 0


def roll_back(nft: NftSnapshots, table: str, saved: str | None) -> RolledBack:
    if saved is None:
        try:
            dropped = len(read_grants(nft, table))
        except TableMissing:
            return RolledBack(0, deleted=True)
        nft.apply(Transaction().delete(Table(table)))
        return RolledBack(0, deleted=True, dropped=dropped)
    try:
        tx = rollback_transaction(table, saved, chain_names(nft, table))
    except ValueError as exc:  # the saved file was changed by hand into something else
        raise KnocknftError(f"the saved table cannot be loaded back: {exc}") from exc
    nft.apply(tx)
    return RolledBack(len(read_grants(nft, table)), deleted=False)


# -- the commands ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Armed:
    applied: ApplyResult
    pending: Pending
    extended: bool  # a confirmation was pending already: its rollback point is kept
    stale: Pending | None = None  # a marker whose watcher had died, dropped


def arm(
    nft: NftSnapshots,
    config: Config,
    seconds: int,
    state: StateDir,
    *,
    spawn: Callable[[Path], int] | None = None,
    clock: Callable[[], float] = boottime,
    wall: Callable[[], float] = time.time,
    alive: Callable[[int], bool] = watcher_alive,
) -> Armed:
    """Save the table, start (or keep) the watcher, apply `config`: `knocknft apply --confirm`.

    The marker and the watcher exist before the table changes, so the rollback is armed even
    if this process dies right after the apply. If the apply fails, nothing is left pending
    that was not pending before.
    """
    table = config.options.table
    start_watcher = spawn or spawn_watcher
    with state.locked():
        previous = state.read_pending()
        stale = None
        if previous is not None and not alive(previous.watcher):
            stale, previous = previous, None
            state.clear()
        if previous is not None and previous.table != table:
            raise KnocknftError(
                f"a confirmation for table inet {previous.table} is pending: run "
                "`knocknft confirm` first"
            )
        if previous is None:
            saved = save_table(nft, table)
            if saved is None:
                state.rollback.unlink(missing_ok=True)
            else:
                write_atomic(state.rollback, _rollback_file(table, saved, wall()))
            pending = Pending(
                table=table,
                seconds=seconds,
                deadline=clock() + seconds,
                due_at=wall() + seconds,
                saved_at=wall(),
                had_table=saved is not None,
                log_file=str(config.options.log_file) if config.options.log_file else None,
                syslog=config.options.syslog,
            )
            state.write_pending(pending)
            try:
                pending = dataclasses.replace(pending, watcher=start_watcher(state.path))
            except BaseException:
                state.clear()
                raise
        else:
            pending = dataclasses.replace(
                previous, seconds=seconds, deadline=clock() + seconds, due_at=wall() + seconds
            )
        state.write_pending(pending)
        try:
            applied = apply_config(nft, config)
        except BaseException:
            if previous is None:
                state.clear()  # the new watcher finds no marker and leaves
            else:
                state.write_pending(previous)
            raise
        # The time to confirm starts when the change is in.
        pending = dataclasses.replace(pending, deadline=clock() + seconds, due_at=wall() + seconds)
        state.write_pending(pending)
        state.outcome.unlink(missing_ok=True)
    return Armed(applied, pending, extended=previous is not None, stale=stale)


def _rollback_file(table: str, saved: str, at: float) -> str:
    return (
        f"# table inet {table} as it was at {clock_text(at)}, before `knocknft apply --confirm`.\n"
        "# Set elements (grants) are left out: the rollback keeps the ones in the kernel.\n"
        "# The rollback empties and deletes the table's chains, then loads this. By hand:\n"
        f"#   nft flush chain inet {table} input; nft delete chain inet {table} input\n"
        "#   nft -f THIS_FILE\n" + saved
    )


def refuse_if_pending(
    state: StateDir, *, alive: Callable[[int], bool] = watcher_alive
) -> Pending | None:
    """A plain `apply` must not slip in under a pending rollback, which would undo it.

    Returns a stale confirmation (its watcher is gone), which it drops."""
    if not state.marker.exists():
        return None
    with state.locked():
        pending = state.read_pending()
        if pending is None:
            return None
        if not alive(pending.watcher):
            state.clear()
            return pending
    raise ConfirmPending(
        f"`knocknft apply --confirm` is pending: table inet {pending.table} is rolled back at "
        f"{clock_text(pending.due_at)}; run `knocknft confirm` first, or apply with --confirm "
        "to restart the timer"
    )


@dataclass(frozen=True)
class Confirmed:
    pending: Pending
    watcher_was_running: bool  # False: the rollback would not have happened anyway


def confirm(state: StateDir, *, alive: Callable[[int], bool] = watcher_alive) -> Confirmed:
    """Keep the change: drop the marker, then tell the watcher, which leaves without acting."""
    try:
        check_state_dir(state.path, create=False)  # UnsafeStateDir: nothing in it is believed
    except FileNotFoundError:
        raise NothingPending(_nothing_pending(state)) from None
    if not state.marker.exists():
        raise NothingPending(_nothing_pending(state))
    with state.locked():
        pending = state.read_pending()
        if pending is None:
            raise NothingPending(_nothing_pending(state))
        state.clear()
    running = alive(pending.watcher)
    if running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pending.watcher, signal.SIGTERM)
    return Confirmed(pending, running)


def _nothing_pending(state: StateDir) -> str:
    text = "nothing to confirm: no `knocknft apply --confirm` is pending"
    outcome = state.read_outcome()
    if outcome is not None:
        text += f"; the last one ended at {clock_text(outcome.get('at'))}: {outcome.get('message')}"
    return text


def clock_text(at: object) -> str:
    """A wall-clock time as people read it in this machine's time zone."""
    if not isinstance(at, int | float):
        return "?"
    return time.strftime("%H:%M:%S", time.localtime(at))


# -- starting the watcher (its own side is knocknft.admin.watcher) ---------------------------


def spawn_watcher(state_dir: Path, timeout: float = READY_TIMEOUT) -> int:
    """Start the watcher for `state_dir` and return its pid once it runs.

    The double fork of `knocknft run -d`: a session of its own, no controlling terminal ever,
    nobody's child but init's, so closing the terminal or the SSH connection sends it nothing.
    It then execs a fresh interpreter, which keeps none of this process's descriptors or state.
    """
    read_end, write_end = os.pipe()
    if fork_detached():
        try:
            os.close(read_end)
            os.set_inheritable(write_end, True)
            args = [sys.executable, "-m", WATCHER_MODULE, str(state_dir), str(write_end)]
            os.execv(sys.executable, args)
        finally:
            os._exit(1)
    os.close(write_end)
    data = read_until_closed(read_end, timeout)
    answer = "no answer" if data is None else data.decode("utf-8", "replace").strip()
    words = answer.split()
    if len(words) == 2 and words[0] == "ready" and words[1].isdigit():
        return int(words[1])
    raise KnocknftError(
        f"the rollback watcher did not start ({answer or 'no answer'}); nothing was changed"
    )
