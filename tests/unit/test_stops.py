"""Pending stop records on disk: a private journal of (door, address, due) that carries no
command, read back after a restart, a due stop marked done before it is handed out, damaged
files set aside, and a cost per knock that does not grow with the number pending."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from pathlib import Path

import pytest

from knocknft.config import Config, parse_config
from knocknft.core.events import Opened
from knocknft.daemon.executor import Daemon
from knocknft.daemon.stops import COMPACT_SLACK, LEGACY_FILE, STATE_FILE, PendingStop, PendingStops
from tests.unit.fakes import RecordingRunner, loaded_nft

CLIENT = ipaddress.ip_address("198.18.0.2")
NOW = 1_700_000_000.0


def lines(path: Path) -> list[list[object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_stops_survive_a_restart_in_a_private_file_without_their_command(tmp_path: Path) -> None:
    path = tmp_path / "state" / STATE_FILE
    stops = PendingStops(path)
    stops.load(NOW)
    stops.schedule("ssh", CLIENT, NOW + 200, "echo stop 198.18.0.2")
    stops.schedule("web", CLIENT, NOW + 100, "echo stop web")
    assert lines(path) == [
        ["S", NOW + 200, "198.18.0.2", "ssh"],
        ["S", NOW + 100, "198.18.0.2", "web"],
    ], "no command on disk: a planted record cannot run one"
    assert path.stat().st_mode & 0o777 == 0o600, "who knocked when is nobody else's business"
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert [p.name for p in path.parent.iterdir()] == [STATE_FILE], "no temp file left"

    again = PendingStops(path)
    again.load(NOW)
    assert (len(again), again.next_due()) == (2, NOW + 100)
    assert again.is_pending("ssh", CLIENT)
    assert again.take_due(NOW + 150) == [PendingStop("web", "198.18.0.2", NOW + 100)]


def test_a_due_stop_is_marked_done_in_the_file_before_it_is_handed_out(tmp_path: Path) -> None:
    path = tmp_path / STATE_FILE
    stops = PendingStops(path)
    stops.load(NOW)
    stops.schedule("ssh", CLIENT, NOW + 100, "echo stop")
    stops.schedule("web", CLIENT, NOW + 300, "echo later")
    assert stops.take_due(NOW + 150) == [PendingStop("ssh", "198.18.0.2", NOW + 100, "echo stop")]
    assert [line[0] for line in lines(path)] == ["D", "S"]
    again = PendingStops(path)
    again.load(NOW + 150)
    assert again.take_due(NOW + 1000) == [PendingStop("web", "198.18.0.2", NOW + 300)]


def test_a_refresh_keeps_the_command_of_the_start_that_ran(tmp_path: Path) -> None:
    stops = PendingStops(tmp_path / STATE_FILE)
    stops.load(NOW)
    stops.schedule("ssh", CLIENT, NOW + 10, "undo what ran")
    assert stops.extend("ssh", CLIENT, NOW + 20)
    assert stops.take_due(NOW + 15) == []
    assert stops.take_due(NOW + 20) == [PendingStop("ssh", "198.18.0.2", NOW + 20, "undo what ran")]
    again = PendingStops(tmp_path / STATE_FILE)
    again.load(NOW + 20)
    assert len(again) == 0, "the refreshed line was the one marked done"


def test_a_knock_costs_one_write_and_no_fsync_and_the_journal_stays_compact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flood of spoofed completions rewrote and fsynced the whole file per knock: O(n^2)."""
    path = tmp_path / STATE_FILE
    stops = PendingStops(path)
    stops.load(NOW)
    fsyncs: list[int] = []
    real_fsync = os.fsync

    def counted_fsync(fd: int) -> None:
        fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counted_fsync)
    for n in range(3 * COMPACT_SLACK):
        address = ipaddress.ip_address(f"198.18.{n // 256}.{n % 256}")
        stops.schedule("ssh", address, NOW + 10, "stop")
        stops.extend("ssh", address, NOW + 20)
    compactions = len(fsyncs) // 2  # write_atomic fsyncs the file and its directory
    assert compactions <= 3, "compacted rarely: amortised O(1) per knock"
    assert len(path.read_text().splitlines()) <= 2 * len(stops) + COMPACT_SLACK + 1
    assert stops.next_due() == NOW + 1, "the timer wakes for the fsync before any stop is due"
    before = len(fsyncs)
    stops.sync(NOW + 1)
    stops.sync(NOW + 1.1)
    assert len(fsyncs) == before + 1, "one fsync per SYNC_INTERVAL, not per knock"
    again = PendingStops(path)
    again.load(NOW)
    assert len(again) == 3 * COMPACT_SLACK and again.next_due() == NOW + 20


DAMAGED = [
    b"[]",
    b"{}",
    b'{"pending": 5}',
    b'["S", NaN, "198.18.0.2", "ssh"]\n',
    b'["S", Infinity, "198.18.0.2", "ssh"]\n',
    b'["S", 1e300, "198.18.0.2", "ssh"]\n',
    b'["S", -5, "198.18.0.2", "ssh"]\n',
    b'["S", 1, "not an address", "ssh"]\n',
    b'["S", 1, "198.18.0.2", ""]\n',
    b'["S", true, "198.18.0.2", "ssh"]\n',
    b'["S", 1, "198.18.0.2", "ssh"]',  # torn: no newline
    b"\xff\xfe\x00garbage",
    b"[" * 100_000,
]


@pytest.mark.parametrize("content", DAMAGED, ids=range(len(DAMAGED)))
def test_a_damaged_journal_is_logged_set_aside_and_ignored(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / STATE_FILE
    path.write_bytes(content)
    stops = PendingStops(path)
    stops.load(NOW)
    assert "is damaged" in caplog.text
    aside = [p for p in tmp_path.iterdir() if ".damaged-" in p.name]
    assert len(aside) == 1 and aside[0].read_bytes() == content, "kept for the admin to look at"
    assert path.read_bytes() in (b"", b'["S", 1.0, "198.18.0.2", "ssh"]\n'), "a fresh journal"
    # Only the torn line's record is whole: nothing NaN or far ahead, which would spin or stall.
    assert stops.next_due() in (None, 1.0)


def test_valid_records_beside_damaged_ones_are_kept(tmp_path: Path) -> None:
    path = tmp_path / STATE_FILE
    path.write_bytes(b'["S", NaN, "198.18.0.3", "ssh"]\ngarbage\n["S", 5.0, "198.18.0.2", "ssh"]\n')
    stops = PendingStops(path)
    stops.load(NOW)
    assert stops.take_due(NOW) == [PendingStop("ssh", "198.18.0.2", 5.0)]


def test_the_legacy_file_is_read_once_without_its_commands(tmp_path: Path) -> None:
    legacy = tmp_path / LEGACY_FILE
    record = {"door": "ssh", "address": "198.18.0.2", "command": "id", "due": 5.0}
    legacy.write_text(json.dumps({"pending": [record]}))
    stops = PendingStops(tmp_path / STATE_FILE)
    stops.load(NOW)
    assert not legacy.exists()
    assert stops.take_due(NOW) == [PendingStop("ssh", "198.18.0.2", 5.0)], "the command is not read"


def web_config(state: Path) -> Config:
    return parse_config(
        f"options:\n  state_dir: {state}\n"
        "doors:\n  web:\n    sequence: [7000, 8000, 9000]\n    open: [443]\n    open_for: 30s\n"
        "    start_command: 'open %IP%'\n    stop_command: 'shut %IP%'\n    cmd_timeout: 5s\n"
    ).config


def test_a_planted_record_runs_the_configs_command_and_a_gone_door_runs_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A record that claimed to carry `id` ran it as root; a record now names a door only."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / LEGACY_FILE).write_text(
        json.dumps(
            {
                "pending": [
                    {"door": "web", "address": "198.18.0.2", "command": "id", "due": 5.0},
                    {"door": "gone", "address": "198.18.0.3", "command": "id", "due": 5.0},
                ]
            }
        )
    )
    config = web_config(tmp_path / "state")
    runner = RecordingRunner()
    daemon = Daemon(
        config, loaded_nft(config), runner, PendingStops(state / STATE_FILE), clock=lambda: NOW
    )
    with caplog.at_level(logging.INFO, "knocknft"):
        daemon.start()
    assert runner.commands == ["shut 198.18.0.2"]
    assert "198.18.0.3: gone: stop record dropped" in caplog.text


def test_the_daemon_schedules_before_the_start_and_runs_the_stop_it_paired(tmp_path: Path) -> None:
    config = web_config(tmp_path / "state")
    runner = RecordingRunner()
    path = tmp_path / "state" / STATE_FILE
    pending = PendingStops(path)
    now = [NOW]
    daemon = Daemon(config, loaded_nft(config), runner, pending, clock=lambda: now[0])
    daemon.start()
    daemon.execute([Opened(CLIENT, config.doors[0], NOW)])
    assert lines(path) == [["S", NOW + 5, "198.18.0.2", "web"]]
    assert runner.commands == ["open 198.18.0.2"]
    now[0] = NOW + 5
    daemon.tick()
    assert runner.commands == ["open 198.18.0.2", "shut 198.18.0.2"]
    assert lines(path)[0][0] == "D"
