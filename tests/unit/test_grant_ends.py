"""Each grant's end is said once, with its reason: expired on the announced schedule, revoked
when another program takes it out, never for a refresh."""

from __future__ import annotations

import ipaddress
import json
import logging
from pathlib import Path

import pytest

from knocknft.config import PortSpec
from knocknft.core.grants import Grant
from knocknft.daemon.auditlog import EventLog
from knocknft.daemon.grantends import COMPACT_SLACK, SETTLE_SECONDS, GrantEnds
from knocknft.netlink.nftevents import ElementAdded, ElementDeleted, EventsLost

A = ipaddress.ip_address("198.18.0.2")
SSH = PortSpec(22)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ends_with_log(tmp_path: Path) -> tuple[GrantEnds, Clock, Path]:
    clock = Clock()
    path = tmp_path / "events.jsonl"
    audit = EventLog(path, clock=clock)
    return GrantEnds(clock, allow=lambda: True, audit=audit.write, who=str), clock, path


def events(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_an_expiry_is_reported_once_when_its_time_comes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ends, clock, path = ends_with_log(tmp_path)
    ends.on_events([ElementAdded(A, SSH, "ssh", 30.0)])
    assert ends.next_due() == 1030.0, "the daemon's timer wakes for it"
    with caplog.at_level(logging.INFO, logger="knocknft"):
        clock.now = 1029.9
        ends.due(clock.now)
        assert "expired" not in caplog.text
        clock.now = 1030.0
        ends.due(clock.now)
        ends.due(clock.now + 60)
    assert caplog.text.count("198.18.0.2: ssh: grant of 22/tcp expired") == 1
    [end] = events(path)
    assert (end["event"], end["door"], end["service"], end["reason"]) == (
        "grant_end",
        "ssh",
        "22/tcp",
        "expired",
    )
    assert ends.next_due() is None


def test_a_refresh_is_no_end_and_moves_the_expiry(tmp_path: Path) -> None:
    ends, clock, path = ends_with_log(tmp_path)
    ends.on_events([ElementAdded(A, SSH, "ssh", 30.0)])
    clock.now += 20
    # A refresh: delete and add in one kernel transaction, the add read a moment later.
    ends.on_events([ElementDeleted(A, SSH)])
    ends.on_events([ElementAdded(A, SSH, "ssh", 30.0)])
    clock.now += 15  # past the first expiry, within the second
    ends.due(clock.now)
    assert not path.read_text()
    clock.now += 15
    ends.due(clock.now)
    assert [e["reason"] for e in events(path)] == ["expired"]


def test_a_removal_by_another_program_is_a_revocation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ends, clock, path = ends_with_log(tmp_path)
    ends.on_events([ElementAdded(A, SSH, "ssh", 30.0)])
    ends.on_events([ElementDeleted(A, SSH)])
    with caplog.at_level(logging.INFO, logger="knocknft"):
        clock.now += SETTLE_SECONDS
        ends.due(clock.now)
        clock.now += 60  # its old expiry passes: no second end
        ends.due(clock.now)
    assert caplog.text.count("grant of 22/tcp revoked: taken out of the set") == 1
    assert [e["reason"] for e in events(path)] == ["revoked"]


def test_what_the_daemon_took_itself_is_not_reported_again(tmp_path: Path) -> None:
    ends, clock, path = ends_with_log(tmp_path)
    ends.on_events([ElementAdded(A, SSH, "ssh", 30.0)])
    assert ends.taken([(A, SSH)]) == {(A, SSH): "ssh"}
    ends.on_events([ElementDeleted(A, SSH)])
    clock.now += 60
    ends.due(clock.now)
    assert not path.read_text()
    assert ends.taken([(A, SSH)]) == {}, "nothing known any more"


def test_debug_shows_every_announcement(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ends, _, _ = ends_with_log(tmp_path)
    with caplog.at_level(logging.INFO, logger="knocknft"):
        ends.on_events([ElementAdded(A, SSH, "ssh", 30.0)])
    assert "nf_tables" not in caplog.text
    with caplog.at_level(logging.DEBUG, logger="knocknft"):
        ends.on_events([ElementAdded(A, SSH, "ssh", 30.0)])
    assert "nf_tables: element added: 198.18.0.2 22/tcp (door ssh, expires in 30s)" in caplog.text


def test_lost_announcements_start_over_from_the_sets_read_again(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "events.jsonl"
    audit = EventLog(path, clock=clock)
    listing = [Grant(A, SSH, "ssh", 10)]  # as the keeper re-read it: 10 s left
    ends = GrantEnds(clock, allow=lambda: True, audit=audit.write, who=str, relist=lambda: listing)
    other = ipaddress.ip_address("198.18.0.3")
    ends.on_events([ElementAdded(other, SSH, "ssh", 5.0)])  # removed while news was lost
    ends.on_events([EventsLost()])
    clock.now += 60
    ends.due(clock.now)
    assert [(e["source"], e["reason"]) for e in events(path)] == [("198.18.0.2", "expired")]


def test_a_removal_announced_after_a_late_addition_is_still_the_daemons(tmp_path: Path) -> None:
    """A grant that gives way in a full set (or a closing door's) is reported by the daemon at
    once; the kernel's news of it, even of its addition, may come only afterwards."""
    ends, clock, path = ends_with_log(tmp_path)
    assert ends.taken([(A, SSH)]) == {}, "its addition not announced yet"
    ends.on_events([ElementAdded(A, SSH, "ssh", 30.0), ElementDeleted(A, SSH)])
    clock.now += 60
    ends.due(clock.now)
    assert not path.read_text()


def test_refreshes_of_long_grants_do_not_pile_up(tmp_path: Path) -> None:
    ends, clock, path = ends_with_log(tmp_path)
    for _ in range(10_000):  # a flood of completions refreshing one week-long grant
        ends.on_events([ElementDeleted(A, SSH), ElementAdded(A, SSH, "ssh", 7 * 86400.0)])
        clock.now += 0.001
    assert len(ends._schedule) <= 2 + COMPACT_SLACK
    clock.now += 7 * 86400
    ends.due(clock.now)
    assert [e["reason"] for e in events(path)] == ["expired"]


def test_grants_of_both_families_ending_together_are_each_reported(tmp_path: Path) -> None:
    # One batch of news, one timeout: the same end for an IPv4 and an IPv6 address, which do
    # not compare (TypeError): the schedule must never need to.
    ends, clock, path = ends_with_log(tmp_path)
    v6 = ipaddress.ip_address("2001:db8::2")
    ends.on_events(
        [
            ElementAdded(A, SSH, "ssh", 30.0),
            ElementAdded(v6, SSH, "ssh", 30.0),
            ElementAdded(A, PortSpec(53, "udp"), "ssh", 30.0),
        ]
    )
    clock.now += 30
    ends.due(clock.now)
    assert sorted((e["source"], e["service"]) for e in events(path)) == [
        ("198.18.0.2", "22/tcp"),
        ("198.18.0.2", "53/udp"),
        ("2001:db8::2", "22/tcp"),
    ]
