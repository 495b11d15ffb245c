"""The table keeper without a kernel: what it remembers from the kernel's news, and what it puts
back when our table, or its rules, vanish."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from knocknft.config import PortSpec, parse_config
from knocknft.core.bans import Ban, ban_transaction
from knocknft.core.grants import Grant, render_grant
from knocknft.daemon.executor import Daemon
from knocknft.daemon.keeper import GrantMemory
from knocknft.daemon.stops import PendingStops
from knocknft.netlink.nftevents import (
    BanAdded,
    BanDeleted,
    ElementAdded,
    ElementDeleted,
    EventsLost,
    RulesDeleted,
    TableDeleted,
)
from knocknft.nft.fake import FakeNft
from knocknft.nft.queries import read_bans
from tests.unit.fakes import RecordingRunner, loaded_nft
from tests.unit.support import with_state_dir

CONFIG = parse_config(
    "doors:\n  ssh:\n    sequence: [7000, 9000/udp, 8000]\n    open: [22]\n    open_for: 1m\n"
).config
A = ipaddress.ip_address("198.18.0.2")
B = ipaddress.ip_address("2001:db8::3")
C = ipaddress.ip_address("198.18.0.4")
SSH = PortSpec(22)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_memory_follows_adds_and_deletes_and_forgets_what_ended() -> None:
    memory = GrantMemory()
    memory.seed([Grant(A, SSH, "ssh", 60, expires=30)], now=0.0)
    memory.note(ElementAdded(B, SSH, "ssh", 10.0), now=0.0)
    memory.note(ElementAdded(C, SSH, "ssh", 50.0), now=0.0)
    memory.note(ElementDeleted(C, SSH), now=1.0)  # knocknft close, or a closing door
    assert memory.live(now=5.5) == [Grant(A, SSH, "ssh", 25), Grant(B, SSH, "ssh", 5)]
    assert memory.live(now=10.0) == [Grant(A, SSH, "ssh", 20)]
    assert len(memory) == 1


def daemon_for(clock: Clock) -> tuple[Daemon, FakeNft]:
    nft = loaded_nft(CONFIG)
    daemon = Daemon(CONFIG, nft, RecordingRunner(), PendingStops(None), clock=clock)
    return daemon, nft


def test_a_deleted_table_is_restored_with_the_grants_it_had_left() -> None:
    clock = Clock()
    daemon, nft = daemon_for(clock)
    daemon.on_table_events(
        [
            ElementAdded(A, SSH, "", 60.0),
            ElementDeleted(A, SSH),
            ElementAdded(A, SSH, "ssh", 60.0),
            ElementAdded(C, SSH, "ssh", 5.0),  # ends before the flush
        ]
    )
    clock.now += 20
    nft.flush_ruleset()
    daemon.on_table_events([TableDeleted()])
    (script,) = nft.scripts  # one transaction: no moment without the grants
    assert script.startswith("# knocknft") and script.endswith(
        render_grant("knocknft", [Grant(A, SSH, "ssh", 40)])
    )
    assert daemon.stats()["table_restores"] == 1


def test_a_table_that_is_there_is_left_alone() -> None:
    daemon, nft = daemon_for(Clock())
    daemon.on_table_events([TableDeleted()])  # deleted and already loaded again by someone
    daemon.check_table()
    assert nft.scripts == [] and daemon.keeper.restores == 0


def test_the_periodic_check_restores_a_table_whose_news_was_lost() -> None:
    daemon, nft = daemon_for(Clock())
    nft.flush_ruleset()
    daemon.check_table()
    assert daemon.keeper.restores == 1 and nft.scripts


def test_the_periodic_check_forgets_ended_grants() -> None:
    clock = Clock()
    daemon, _ = daemon_for(clock)
    daemon.on_table_events([ElementAdded(A, SSH, "ssh", 5.0), ElementAdded(B, SSH, "ssh", 60.0)])
    clock.now += 10
    daemon.check_table()
    assert len(daemon.keeper.memory) == 1, "memory stays as small as the sets"


def test_lost_news_rereads_the_grants_from_the_kernel() -> None:
    daemon, _ = daemon_for(Clock())
    daemon.on_table_events([ElementAdded(A, SSH, "ssh", 60.0)])
    daemon.on_table_events([EventsLost()])  # the kernel's sets (empty here) are the truth
    assert len(daemon.keeper.memory) == 0


BANNED = ipaddress.ip_address("198.18.0.9")


def test_a_deleted_table_gets_back_the_bans_in_force_with_their_time_left() -> None:
    clock = Clock()
    daemon, nft = daemon_for(clock)
    daemon.on_table_events(
        [
            BanAdded(BANNED, "services", "banned", 3600.0),
            BanAdded(B, "host", "banned", 600.0),
            BanAdded(C, "services", "banned", 5.0),  # ends before the flush
            BanAdded(A, "services", "banned", 3600.0),
            BanDeleted(A, "services"),  # lifted by `knocknft close`
        ]
    )
    clock.now += 20
    nft.flush_ruleset()
    daemon.on_table_events([TableDeleted()])
    (script,) = nft.scripts  # one transaction: no moment without the bans
    assert script.endswith(
        ban_transaction(
            "knocknft", [Ban(BANNED, "banned", 3580, "services"), Ban(B, "banned", 580, "host")]
        ).render()
    )


def test_the_bans_in_the_kernel_at_start_are_remembered(tmp_path: Path) -> None:
    config = with_state_dir(CONFIG, tmp_path)
    nft = loaded_nft(config)
    nft.apply(ban_transaction("knocknft", [Ban(BANNED, "banned", 3600)]))
    clock = Clock()
    daemon = Daemon(config, nft, RecordingRunner(), PendingStops(None), clock=clock)
    daemon.start()
    nft.flush_ruleset()
    daemon.check_table()
    assert [(b.address, b.timeout) for b in daemon.keeper.bans.live(clock())] == [(BANNED, 3600)]
    assert nft.scripts[-1].endswith(
        ban_transaction("knocknft", [Ban(BANNED, "banned", 3600)]).render()
    )


def test_rules_flushed_behind_our_back_are_put_back_and_the_sets_kept() -> None:
    daemon, nft = daemon_for(Clock())
    nft.apply(ban_transaction("knocknft", [Ban(BANNED, "banned", 3600)]))
    nft.scripts.clear()
    table = nft.tables["inet", "knocknft"]
    for chain in table.chains.values():
        chain.rules.clear()  # what `nft flush table inet knocknft` leaves
    daemon.on_table_events([RulesDeleted()])
    (script,) = nft.scripts
    assert "add rule" in script and "delete table" not in script
    assert daemon.keeper.restores == 1
    table = nft.tables["inet", "knocknft"]
    assert any(chain.rules for chain in table.chains.values()), "the gate is back"
    assert [b.address for b in read_bans(nft, "knocknft")] == [BANNED], "the ban stayed"


def test_rules_deleted_by_our_own_reapply_are_no_reason_to_restore() -> None:
    daemon, nft = daemon_for(Clock())
    daemon.on_table_events([RulesDeleted()])  # the table is complete, as a reapply leaves it
    assert nft.scripts == [] and daemon.keeper.restores == 0


def test_the_periodic_check_puts_back_rules_whose_news_was_lost() -> None:
    daemon, nft = daemon_for(Clock())
    for chain in nft.tables["inet", "knocknft"].chains.values():
        chain.rules.clear()
    daemon.check_table()
    assert daemon.keeper.restores == 1
    assert any(c.rules for c in nft.tables["inet", "knocknft"].chains.values())
