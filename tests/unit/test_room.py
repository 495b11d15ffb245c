"""Room in a crowded allowlist set: what is held back, what gives way, and the daemon's part:
grants refused one by one, set full said plainly, a knocker let in during a flood."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging

import pytest

from knocknft.config import PortSpec, parse_config
from knocknft.core.events import Opened
from knocknft.core.grants import Grant
from knocknft.core.room import GrantRoom, prefix_of
from knocknft.daemon.executor import Daemon
from knocknft.daemon.stops import PendingStops
from knocknft.nft.fake import FakeNft
from knocknft.nft.queries import read_grants
from tests.unit.fakes import RecordingRunner, loaded_nft
from tests.unit.support import CLOSING as CONFIG

SSH = PortSpec(22, "tcp")


def grant(address: str, seconds: int = 60) -> Grant:
    return Grant(ipaddress.ip_address(address), SSH, "ssh", seconds)


def flood_v4(count: int, prefixes: int) -> list[Grant]:
    """`count` grants spread round-robin over `prefixes` /24s of 198.19.0.0/16."""
    return [grant(f"198.19.{i % prefixes}.{i // prefixes + 1}") for i in range(count)]


def test_a_prefix_past_its_share_of_a_crowded_set_is_held_back() -> None:
    room = GrantRoom(size=16, share=2)
    # Half full from one prefix: before the set is crowded, every grant goes in.
    first = room.plan(flood_v4(8, 1), now=0.0)
    assert len(first.admitted) == 8 and not first.held
    more = room.plan([grant("198.19.0.100"), grant("198.18.5.1"), grant("198.18.5.2")], 0.0)
    assert [str(g.address) for g in more.held] == ["198.19.0.100"]
    assert [str(g.address) for g in more.admitted] == ["198.18.5.1", "198.18.5.2"]
    # The share is full for 198.18.5.0/24 now; a refresh takes no room and always goes in.
    again = room.plan([grant("198.18.5.3"), grant("198.18.5.1", 300)], 0.0)
    assert [str(g.address) for g in again.held] == ["198.18.5.3"]
    assert [str(g.address) for g in again.admitted] == ["198.18.5.1"]


def test_in_a_full_set_the_oldest_grant_of_the_busiest_prefix_gives_way() -> None:
    room = GrantRoom(size=8, share=8)
    room.plan([grant("198.18.7.1")], 0.0)  # the oldest grant, but of a quiet prefix
    room.plan(flood_v4(7, 1), 1.0)  # 198.19.0.1 .. 198.19.0.7: the busiest prefix
    plan = room.plan([grant("198.18.9.9")], 2.0)
    assert plan.admitted == [grant("198.18.9.9")]
    assert plan.evictions == [(ipaddress.ip_address("198.19.0.1"), SSH)]
    assert len(room) == 8


def test_expired_grants_leave_the_room() -> None:
    room = GrantRoom(size=4, share=1)
    room.plan(flood_v4(4, 1), now=0.0)  # 60 s each
    late = room.plan([grant("198.19.0.50")], now=61.0)
    assert late.admitted and not late.evictions and not late.held
    assert room.held_by(ipaddress.ip_address("198.19.0.50")) == 1


def test_ipv6_prefixes_are_slash_64s() -> None:
    a, b = ipaddress.ip_address("2001:db8:1:2::1"), ipaddress.ip_address("2001:db8:1:2:ffff::9")
    assert prefix_of(a) == prefix_of(b) != prefix_of(ipaddress.ip_address("2001:db8:1:3::1"))


def small_sets(nft: FakeNft, size: int) -> None:
    for table in nft.tables.values():
        for fake_set in table.sets.values():
            fake_set.spec = dataclasses.replace(fake_set.spec, size=size)


def test_a_full_set_fails_only_the_grants_beyond_it_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Elements the daemon did not add fill the set: its own grants give way for new ones, and
    when it holds none, the refusal says the set is full, one grant at a time."""
    config = parse_config(CONFIG).config
    nft = loaded_nft(config)
    small_sets(nft, 3)
    daemon = Daemon(config, nft, RecordingRunner(), PendingStops(None), clock=lambda: 0.0)
    door = config.doors[0]
    nft.grant("knocknft", [grant("198.18.3.1"), grant("198.18.3.2")])  # `knocknft open`, say
    with caplog.at_level(logging.INFO, logger="knocknft"):
        daemon.execute(
            [Opened(ipaddress.ip_address(f"198.18.0.{i}"), door, 0.0) for i in (10, 11, 12)]
        )
    held = sorted(str(g.address) for g in read_grants(nft, "knocknft"))
    # .10 took the last slot; .11 made room by evicting .10 (the daemon's own, its only one);
    # .12 found nothing of the daemon's left to evict.
    assert held == ["198.18.0.11", "198.18.3.1", "198.18.3.2"]
    assert "198.18.0.11: openSSH: granted 22/tcp" in caplog.text
    assert "198.18.0.12: openSSH: could not grant 22/tcp: an allowlist set is full" in caplog.text
    assert "198.18.0.12: openSSH: granted" not in caplog.text
    stats = daemon.stats()
    assert (stats["grants"], stats["grant_failures"], stats["grants_evicted"]) == (2, 1, 1)


def test_a_flood_of_completions_cannot_keep_a_knocker_out(caplog: pytest.LogCaptureFixture) -> None:
    """The daemon with a small room: forged completions from many /24s fill it, and a knocker
    still gets in, at the cost of the busiest prefix's oldest grant. Its lines are limited."""
    config = parse_config(CONFIG).config
    nft = loaded_nft(config)
    daemon = Daemon(config, nft, RecordingRunner(), PendingStops(None), clock=lambda: 0.0)
    daemon.granter.room = GrantRoom(size=64, share=4)
    door = config.doors[0]
    forged = [Opened(g.address, door, 0.0) for g in flood_v4(1000, 100)]
    with caplog.at_level(logging.INFO, logger="knocknft"):
        daemon.execute(forged)
        daemon.execute([Opened(ipaddress.ip_address("198.18.0.2"), door, 0.0)])
    granted = {str(g.address) for g in read_grants(nft, "knocknft")}
    assert "198.18.0.2" in granted
    assert len(granted) <= 64
    stats = daemon.stats()
    # Spread over 100 /24s, no prefix reaches its share: the oldest give way, the newest stay.
    assert stats["grants_evicted"] == 1001 - 64
    assert stats["grants"] == 65  # the last 64 of the flood and the knocker
    # OPEN and grant lines share a bucket (the clock stands still: it never refills).
    opens = [r for r in caplog.records if "OPEN SESAME" in r.getMessage()]
    assert len(opens) < 200 < len(forged)
    assert daemon.grant_log.suppressed > 0
    daemon.report_held_back()
    assert "OPEN and grant log lines suppressed" in caplog.text
