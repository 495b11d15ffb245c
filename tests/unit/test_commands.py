"""The command runner: one client's commands run in the order they were asked for."""

from __future__ import annotations

from pathlib import Path

from knocknft.daemon.commands import ShellRunner


def test_one_clients_commands_never_overtake_each_other(tmp_path: Path) -> None:
    # An opening door's slow command, then a closing door's fast one, for the same client:
    # knockd forks both and the close can win (a rule deleted before it was added stays).
    record = tmp_path / "order"
    runner = ShellRunner()
    runner.submit("open", f"sleep 0.3; echo open >> {record}", "198.18.0.2")
    runner.submit("close", f"echo close >> {record}", "198.18.0.2")
    runner.close()
    assert record.read_text().split() == ["open", "close"]


def test_another_clients_command_is_not_held_up_by_a_slow_one(tmp_path: Path) -> None:
    record = tmp_path / "order"
    runner = ShellRunner(workers=4)
    clients = [f"198.18.0.{i}" for i in range(2, 40)]
    slow = clients[0]
    # A client on a lane of its own: find one whose lane differs from the slow client's.
    runner.submit("slow", f"sleep 1; echo slow >> {record}", slow)
    other = next(c for c in clients[1:] if runner.lane_of(c) != runner.lane_of(slow))
    runner.submit("fast", f"echo fast >> {record}", other)
    runner.close()
    assert record.read_text().split() == ["fast", "slow"]
