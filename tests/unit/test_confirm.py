"""Commit-confirmed without a kernel: what is saved, when the watcher rolls back, what `confirm`
and a second `apply --confirm` do to the pending state. The real thing runs in
tests/integration/test_confirm.py."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from knocknft.admin.confirm import (
    ConfirmPending,
    NothingPending,
    arm,
    confirm,
    refuse_if_pending,
    rollback_script,
)
from knocknft.admin.confirmfiles import Pending, StateDir
from knocknft.admin.watcher import watch
from knocknft.config import parse_config
from knocknft.core.transaction import SavedTable, Table, Transaction
from knocknft.errors import KnocknftError, NftError
from knocknft.nft.fake import FakeNft
from tests.unit.fakes import loaded_nft
from tests.unit.support import with_state_dir

CONFIG = parse_config(
    "doors:\n  ssh:\n    sequence: [7000, 9000/udp, 8000]\n    open: [22]\n    open_for: 1m\n"
).config
SETS = "".join(
    f"\tset allow{v} {{\n\t\ttype ipv{v}_addr . inet_proto . inet_service\n\t\tsize 65536\n"
    "\t\tflags timeout\n\t\ttimeout 60s\n\t}\n"
    for v in (4, 6)
)
CHAIN = "\tchain input {\n\t\ttype filter hook input priority filter - 10; policy accept;\n"
SAVED = "table inet knocknft {\n" + SETS + CHAIN + '\t\tiif "lo" accept\n\t}\n}\n'


def snapshot_nft(saved: str | None = SAVED, refuse: str = "") -> FakeNft:
    """A FakeNft whose table is `saved` (a listing; None: no table), refusing to `refuse`."""
    nft = FakeNft()
    if saved is not None:
        nft.apply(Transaction().add(SavedTable(Table("knocknft"), saved)))
        nft.transactions.clear()
        nft.scripts.clear()
    if refuse == "check":
        nft.refuse("check", NftError("syntax error"))
    if refuse == "run":
        nft.refuse("apply", NftError("Operation not permitted"))
    return nft


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateDir]:
    # The watcher sets up the knocknft logger for its own process; give it back as it was.
    logger = logging.getLogger("knocknft")
    handlers, propagate, level = list(logger.handlers), logger.propagate, logger.level
    yield StateDir(tmp_path / "state")
    for handler in logger.handlers:
        handler.close()
    logger.handlers, logger.propagate, logger.level = handlers, propagate, level


def armed(state: StateDir, nft: FakeNft, clock: Clock, seconds: int = 60) -> Pending:
    return arm(
        nft,
        with_state_dir(CONFIG, state.path),
        seconds,
        state,
        spawn=lambda _: os.getpid(),
        clock=clock,
        alive=lambda _: True,
    ).pending


def test_the_rollback_empties_and_deletes_every_chain_there_is_then_loads_the_saved_table() -> None:
    assert rollback_script("knocknft", SAVED, ["input", "extra"]) == (
        "add table inet knocknft\n"
        "flush chain inet knocknft input\nflush chain inet knocknft extra\n"
        "delete chain inet knocknft input\ndelete chain inet knocknft extra\n" + SAVED
    )


def test_arm_saves_the_table_checks_its_rollback_then_applies(state: StateDir) -> None:
    nft, clock = snapshot_nft(), Clock()
    pending = armed(state, nft, clock)
    assert [tx.render() for tx in nft.checked] == [rollback_script("knocknft", SAVED, ["input"])]
    assert "add table inet knocknft" in nft.scripts[-1], "the new config is applied"
    assert state.rollback.read_text().endswith(SAVED)
    assert state.rollback.stat().st_mode & 0o777 == 0o600, "the ruleset names the knock ports"
    assert (pending.had_table, pending.deadline, pending.watcher) == (True, 1060.0, os.getpid())
    assert state.read_pending() == pending


def test_a_table_that_would_not_load_back_refuses_the_apply(state: StateDir) -> None:
    nft = snapshot_nft(refuse="check")
    with pytest.raises(KnocknftError, match="cannot arm a rollback"):
        armed(state, nft, Clock())
    assert nft.scripts == [] and not state.marker.exists()


def test_a_failed_apply_leaves_nothing_pending(state: StateDir) -> None:
    with pytest.raises(NftError):
        armed(state, snapshot_nft(refuse="run"), Clock())
    assert not state.marker.exists() and not state.rollback.exists()


def test_no_table_before_means_the_rollback_deletes_it(state: StateDir) -> None:
    pending = armed(state, snapshot_nft(saved=None), Clock())
    assert not pending.had_table and not state.rollback.exists()


def test_a_second_arm_keeps_the_rollback_point_and_restarts_the_timer(state: StateDir) -> None:
    clock = Clock()
    first = armed(state, snapshot_nft(), clock)
    clock.now += 50
    second = armed(state, snapshot_nft(saved="table inet knocknft {\n}\n"), clock, seconds=30)
    assert state.rollback.read_text().endswith(SAVED), "the first, confirmed-good table stays"
    assert second.saved_at == first.saved_at
    assert (second.deadline, second.seconds) == (1080.0, 30)


def test_a_stale_confirmation_is_dropped_and_armed_anew(state: StateDir) -> None:
    state.path.mkdir()
    stale = Pending("knocknft", 60, 1.0, 1.0, 1.0, had_table=False, watcher=999999)
    state.write_pending(stale)
    result = arm(
        snapshot_nft(),
        with_state_dir(CONFIG, state.path),
        60,
        state,
        spawn=lambda _: 4242,
        clock=Clock(),
        alive=lambda _: False,
    )
    assert result.stale == stale and not result.extended
    assert result.pending.watcher == 4242 and result.pending.had_table


def test_a_plain_apply_is_refused_while_a_confirmation_is_pending(state: StateDir) -> None:
    assert refuse_if_pending(state) is None
    pending = armed(state, snapshot_nft(), Clock())
    with pytest.raises(ConfirmPending, match="run `knocknft confirm` first"):
        refuse_if_pending(state, alive=lambda _: True)
    assert refuse_if_pending(state, alive=lambda _: False) == pending, "a dead watcher's is stale"
    assert not state.marker.exists()


def test_confirm_drops_the_pending_rollback(state: StateDir) -> None:
    with pytest.raises(NothingPending, match="nothing to confirm"):
        confirm(state)
    pending = armed(state, snapshot_nft(), Clock())
    done = confirm(state, alive=lambda _: False)
    assert done.pending == pending and not done.watcher_was_running
    assert not state.marker.exists() and not state.rollback.exists()
    with pytest.raises(NothingPending):
        confirm(state)


def test_the_watcher_rolls_back_at_the_deadline_keeping_the_sets(state: StateDir) -> None:
    clock = Clock()
    armed(state, snapshot_nft(), clock)
    nft = snapshot_nft()
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        clock.now += seconds

    watch(state, nft, clock=clock, wait=wait)
    assert sum(waits) == 60 and max(waits) <= 1.0
    (script,) = nft.scripts
    assert script.startswith(
        "add table inet knocknft\nflush chain inet knocknft input\n"
        "delete chain inet knocknft input\n# table inet knocknft as it was"
    )
    assert script.endswith(SAVED)
    assert not state.marker.exists()
    outcome = state.read_outcome()
    assert outcome is not None and outcome["ok"] and "rolled back" in outcome["message"]
    with pytest.raises(NothingPending, match=r"the last one ended at .*not confirmed within 60s"):
        confirm(state)


def test_a_signal_before_confirmation_rolls_back_at_once(state: StateDir) -> None:
    armed(state, snapshot_nft(saved=None), Clock())
    nft = loaded_nft(CONFIG)
    watch(state, nft, clock=Clock(), wait=lambda _: signal.SIGTERM)
    assert nft.transactions == [Transaction().delete(Table("knocknft"))]
    assert nft.tables == {}
    outcome = state.read_outcome()
    assert outcome is not None and "SIGTERM before `knocknft confirm`" in outcome["message"]
    assert "DELETED" in outcome["message"]


def test_the_watcher_leaves_quietly_once_confirmed(state: StateDir) -> None:
    armed(state, snapshot_nft(), Clock())
    nft = snapshot_nft()

    def confirm_meanwhile(seconds: float) -> int:
        confirm(state, alive=lambda _: False)
        return signal.SIGTERM

    watch(state, nft, clock=Clock(), wait=confirm_meanwhile)
    assert nft.scripts == [] and state.read_outcome() is None


def test_a_failed_rollback_is_recorded_as_such(state: StateDir) -> None:
    clock = Clock()
    armed(state, snapshot_nft(), clock)
    clock.now += 61
    watch(state, snapshot_nft(refuse="run"), clock=clock)
    outcome = state.read_outcome()
    assert outcome is not None and not outcome["ok"] and "FAILED" in outcome["message"]
    assert not state.marker.exists() and state.rollback.exists(), "kept for a hand to load"


def test_a_state_dir_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    state = StateDir(tmp_path / "file" / "state")
    with pytest.raises(KnocknftError, match=r"state directory .*file/state: Not a directory"):
        armed(state, snapshot_nft(), Clock())
