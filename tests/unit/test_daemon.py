"""The daemon's effects for a completed knock, with a recording nft: what it grants and revokes."""

from __future__ import annotations

import ipaddress
import logging

import pytest

from knocknft.config import Config, parse_config
from knocknft.core.events import Evicted, Opened
from knocknft.daemon.executor import Daemon
from knocknft.daemon.loglimit import KNOCK_LOG_BURST
from knocknft.daemon.stops import PendingStops
from knocknft.netlink.packet import KnockPacket
from knocknft.nft.fake import FakeNft
from tests.unit.fakes import RecordingRunner, loaded_nft
from tests.unit.support import CLOSING as CONFIG

KNOCKER = ipaddress.ip_address("198.18.0.2")


def daemon_for(config: Config, native: bool = True) -> tuple[Daemon, FakeNft]:
    nft = loaded_nft(config)
    daemon = Daemon(
        config, nft, RecordingRunner(), PendingStops(None), clock=lambda: 0.0, native_grants=native
    )
    return daemon, nft


def test_a_closing_door_revokes_the_knockers_grant_for_its_services() -> None:
    config = parse_config(CONFIG).config
    daemon, nft = daemon_for(config)
    open_door, close_door = config.doors
    daemon.execute([Opened(KNOCKER, open_door, 0.0)])
    assert "allow4 { 198.18.0.2 . tcp . 22 timeout 3600s comment" in nft.scripts[-1]
    daemon.execute([Opened(KNOCKER, close_door, 1.0)])
    assert nft.scripts[-1] == (
        "add element inet knocknft allow4 { 198.18.0.2 . tcp . 22 timeout 1s }\n"
        "delete element inet knocknft allow4 { 198.18.0.2 . tcp . 22 }\n"
    )


def test_a_closing_door_has_no_native_effect_under_a_knockd_conf() -> None:
    config = parse_config(CONFIG).config
    daemon, nft = daemon_for(config, native=False)
    daemon.execute([Opened(KNOCKER, config.doors[1], 0.0)])
    assert nft.scripts == []


def test_debug_logs_every_knock_packet_and_info_none(caplog: pytest.LogCaptureFixture) -> None:
    config = parse_config(CONFIG).config
    daemon, _ = daemon_for(config)
    server = ipaddress.ip_address("198.18.0.1")
    packet = KnockPacket(KNOCKER, server, "tcp", 7000, 0x02, 2, 0.0, sport=40000, seq=1)
    with caplog.at_level(logging.INFO, logger="knocknft"):
        daemon.handle_packets([packet])
    assert "packet:" not in caplog.text
    with caplog.at_level(logging.DEBUG, logger="knocknft"):
        daemon.handle_packets([packet])
    assert "packet: 198.18.0.2 -> 198.18.0.1 7000/tcp flags 0x02" in caplog.text


def test_evictions_under_a_flood_do_not_flood_the_debug_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = parse_config(CONFIG).config
    daemon, _ = daemon_for(config)  # its clock stands still: the bucket never refills
    door = config.doors[0]
    forged = [
        Evicted(ipaddress.ip_address(f"198.19.{i // 250}.{i % 250}"), door, 1) for i in range(1000)
    ]
    with caplog.at_level(logging.DEBUG, logger="knocknft"):
        daemon.execute(forged)
    lines = [r for r in caplog.records if "attempt evicted" in r.getMessage()]
    assert len(lines) == KNOCK_LOG_BURST
    assert daemon.knock_log.suppressed == 1000 - KNOCK_LOG_BURST


def test_a_second_knock_while_open_moves_the_stop_and_runs_no_second_start() -> None:
    text = (
        CONFIG
        + "    start_command: 'open %IP%'\n    stop_command: 'shut %IP%'\n    cmd_timeout: 5s\n"
    )
    config = parse_config(text).config
    runner = RecordingRunner()
    pending = PendingStops(None)
    daemon = Daemon(config, loaded_nft(config), runner, pending, clock=lambda: 0.0)
    door = config.doors[1]
    daemon.execute([Opened(KNOCKER, door, 100.0)])
    daemon.execute([Opened(KNOCKER, door, 103.0)])
    assert runner.commands == ["open 198.18.0.2"]
    assert daemon.counters.refreshed == 1 and daemon.counters.commands == 1
    assert pending.next_due() == 108.0 and len(pending) == 1
    assert [s.command for s in pending.take_due(108.0)] == ["shut 198.18.0.2"]
