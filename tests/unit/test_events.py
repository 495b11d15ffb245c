"""The event log: a JSON line for each thing an admin audits, and nothing for knocks."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from knocknft.config import PortSpec, parse_config
from knocknft.core.events import DoorDisabled, Evicted, Invalidated, Opened, Progress, TimedOut
from knocknft.daemon.auditlog import EventLog
from knocknft.daemon.commands import ShellRunner
from knocknft.daemon.executor import Daemon
from knocknft.daemon.stops import PendingStops
from knocknft.errors import KnocknftError, NftError
from knocknft.netlink.nftevents import ElementAdded
from knocknft.nft.fake import FakeNft
from tests.unit.fakes import RecordingRunner, loaded_nft
from tests.unit.support import CLOSING

KNOCKER = ipaddress.ip_address("198.18.0.2")
NOW = 1_700_000_000.5
COMMANDS = CLOSING + "    start_command: 'true'\n    stop_command: 'true'\n    cmd_timeout: 5s\n"


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def daemon_with_log(tmp_path: Path, text: str = CLOSING, nft: FakeNft | None = None) -> Daemon:
    config = parse_config(text).config
    return Daemon(
        config,
        nft or loaded_nft(config),
        RecordingRunner(),
        PendingStops(None),
        clock=lambda: NOW,
        audit=EventLog(tmp_path / "log" / "events.jsonl", clock=lambda: NOW),
    )


def test_an_open_and_its_grants_and_a_close_are_logged(tmp_path: Path) -> None:
    daemon = daemon_with_log(tmp_path)
    open_door, close_door = daemon.config.doors
    daemon.execute([Progress(KNOCKER, open_door, 3), Opened(KNOCKER, open_door, NOW)])
    # The kernel's announcement of the grant: the daemon learns its door from it.
    daemon.on_table_events([ElementAdded(KNOCKER, PortSpec(22), "openSSH", 3600.0)])
    daemon.execute([Opened(KNOCKER, close_door, NOW)])
    events = lines(tmp_path / "log" / "events.jsonl")
    # In the order they happen: the kernel first (grant, revoke), then the lines about them.
    assert [e["event"] for e in events] == ["open", "grant", "grant_end", "open"]
    assert events[1] == {
        "time": events[1]["time"],
        "event": "grant",
        "source": "198.18.0.2",
        "door": "openSSH",
        "service": "22/tcp",
        "timeout": 3600,
    }
    assert events[2] == {
        "time": events[2]["time"],
        "event": "grant_end",
        "source": "198.18.0.2",
        "door": "openSSH",
        "service": "22/tcp",
        "reason": "closed",
        "by": "closeSSH",
    }
    assert events[0]["time"].startswith("2023-11-1") and events[0]["time"][19:23] == ".500"


def test_knock_level_events_write_nothing(tmp_path: Path) -> None:
    """A flood of forged knocks ends in these: none of them may cost a line."""
    daemon = daemon_with_log(tmp_path)
    door = daemon.config.doors[0]
    daemon.execute(
        [
            event(KNOCKER, door, 1)
            for event in (Progress, TimedOut, Invalidated, Evicted)
            for _ in range(100)
        ]
    )
    assert (tmp_path / "log" / "events.jsonl").read_text() == ""


def test_refused_grants_and_disabled_doors_are_logged(tmp_path: Path) -> None:
    refusing = FakeNft()
    refusing.refuse("grant", NftError("Could not process rule: No such file or directory"))
    daemon = daemon_with_log(tmp_path, nft=refusing)
    door = daemon.config.doors[0]
    daemon.execute(
        [Opened(KNOCKER, door, NOW), DoorDisabled(door, "its one-time sequences are used up")]
    )
    events = lines(tmp_path / "log" / "events.jsonl")
    assert [e["event"] for e in events] == ["grant_failed", "open", "door_disabled"]
    assert "No such file" in events[0]["error"] and events[0]["service"] == "22/tcp"
    assert events[2]["reason"] == "its one-time sequences are used up"


def test_a_stop_command_falling_due_is_logged(tmp_path: Path) -> None:
    daemon = daemon_with_log(tmp_path, COMMANDS)
    daemon.execute([Opened(KNOCKER, daemon.config.doors[1], NOW - 10)])
    daemon.tick()
    events = lines(tmp_path / "log" / "events.jsonl")
    assert [e["event"] for e in events] == ["grant_end", "open", "command_timeout"]
    assert events[2] == {
        "time": events[2]["time"],
        "event": "command_timeout",
        "source": "198.18.0.2",
        "door": "closeSSH",
    }


def test_commands_are_logged_with_their_exit_status(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    runner = ShellRunner(on_done=log.command)
    runner.submit("ssh", "exit 3")
    runner.submit("ssh", "true")
    runner.close()
    log.close()
    events = sorted(lines(tmp_path / "events.jsonl"), key=lambda e: e["exit"])
    assert [(e["event"], e["door"], e["command"], e["exit"]) for e in events] == [
        ("command", "ssh", "true", 0),
        ("command", "ssh", "exit 3", 3),
    ]


def test_an_event_log_that_cannot_be_opened_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(KnocknftError, match=r"options\.event_log: cannot open"):
        EventLog(tmp_path / "dir")


def test_event_log_is_an_absolute_path_option() -> None:
    text = CLOSING.replace(
        "doors:\n", "options:\n  event_log: /var/log/knocknft/events.jsonl\ndoors:\n"
    )
    assert parse_config(text).config.options.event_log == Path("/var/log/knocknft/events.jsonl")
    assert parse_config(CLOSING).config.options.event_log is None
