"""Pending stop commands on disk: written whole and private, read back after a restart, and a
due one is out of the file before anyone runs it."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from knocknft.daemon.stops import STATE_FILE, PendingStop, PendingStops

CLIENT = ipaddress.ip_address("198.18.0.2")


def test_stops_survive_a_restart_in_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / STATE_FILE
    stops = PendingStops(path)
    stops.schedule("ssh", CLIENT, "echo stop 198.18.0.2", due=200.0)
    stops.schedule("web", CLIENT, "echo stop web", due=100.0)
    assert json.loads(path.read_text())["pending"] == [
        {"door": "web", "address": "198.18.0.2", "command": "echo stop web", "due": 100.0},
        {"door": "ssh", "address": "198.18.0.2", "command": "echo stop 198.18.0.2", "due": 200.0},
    ]
    assert path.stat().st_mode & 0o777 == 0o600, "a stop command may carry secrets"
    assert [p.name for p in path.parent.iterdir()] == [STATE_FILE], "no temp file left"

    again = PendingStops(path)
    again.load()
    assert (len(again), again.next_due()) == (2, 100.0)
    assert again.is_pending("ssh", CLIENT)


def test_a_due_stop_leaves_the_file_before_it_is_handed_out(tmp_path: Path) -> None:
    path = tmp_path / STATE_FILE
    stops = PendingStops(path)
    stops.schedule("ssh", CLIENT, "echo stop", due=100.0)
    stops.schedule("web", CLIENT, "echo later", due=300.0)
    assert stops.take_due(150.0) == [PendingStop("ssh", "198.18.0.2", "echo stop", 100.0)]
    assert [p["door"] for p in json.loads(path.read_text())["pending"]] == ["web"]
