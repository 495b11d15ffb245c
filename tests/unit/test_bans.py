"""Banning doors: the config's keys (errors at file:line), the rules and sets rendered, the ban
as an effect decided before any line, carried out into the deny set (the fake kernel), listed
and lifted."""

from __future__ import annotations

import ipaddress
import logging
import textwrap

import pytest

from knocknft.config import MAX_BAN_SECONDS, parse_config
from knocknft.core.bans import Ban, parse_deny_listing
from knocknft.core.decide import Audit, BanSources, LogLine, ReportBan, RunCommand, decide
from knocknft.core.events import Opened
from knocknft.core.ruleset import render_ruleset
from knocknft.daemon.executor import Daemon
from knocknft.daemon.stops import PendingStops
from knocknft.errors import ConfigError, NftError, Problem, UsageError
from knocknft.nft.operations import lift_bans, open_grant
from knocknft.nft.queries import read_bans
from tests.unit.fakes import RecordingRunner, loaded_nft

KNOCKER = ipaddress.ip_address("198.18.0.2")
KNOCKER6 = ipaddress.ip_address("2001:db8::2")

CONFIG = """\
options:
  always_allow: [198.18.1.0/24]
doors:
  ssh:
    sequence: [1228, 9000/udp, 1227]
    open: [22/tcp]
    open_for: 5m
  banned1:
    sequence: [1220, 1221]
    deny_for: 1h
    start_command: logger banned %IP%
  banned3:
    sequence: [1226, 1226]
    deny_for: 1d
    deny: host
"""
SSH, BANNED1, BANNED3 = parse_config(CONFIG).config.doors


def only_error(text: str) -> Problem:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), "cfg.yaml")
    (problem,) = info.value.problems
    return problem


class NothingPending:
    def is_pending(self, door: str, address: object) -> bool:
        return False


# -- config -----------------------------------------------------------------------------------


def test_a_banning_door_reads_its_duration_and_scope_and_is_not_called_weak() -> None:
    loaded = parse_config(CONFIG)
    assert (BANNED1.deny_for, BANNED1.deny) == (3600, "services")
    assert (BANNED3.deny_for, BANNED3.deny) == (86400, "host")
    # Short, ascending, one protocol: what a trap for scanners is meant to be.
    assert not [w for w in loaded.warnings if "banned" in (w.key or "")]


@pytest.mark.parametrize(
    ("change", "line", "key", "words"),
    [
        (("deny: host", "deny: all"), 15, "doors.banned3.deny", "a ban denies"),
        (("deny_for: 1h", "deny_for: 31d"), 10, "doors.banned1.deny_for", "30d"),
        (("deny_for: 1h\n", "deny: host\n"), 10, "doors.banned1.deny", "add deny_for"),
        (
            ("deny_for: 1h\n", "deny_for: 1h\n    open: [80/tcp]\n"),
            10,
            "doors.banned1.deny_for",
            "",
        ),
        (("[1220, 1221]", "[1228]"), 8, "doors.banned1.sequence", "no other door begins with"),
    ],
)
def test_a_bad_ban_is_an_error_at_its_line(
    change: tuple[str, str], line: int, key: str, words: str
) -> None:
    text = CONFIG.replace(*change)
    if "open: [80/tcp]" in text:
        text = text.replace("    open: [80/tcp]\n", "    open: [80/tcp]\n    open_for: 1m\n", 1)
    problem = only_error(text)
    assert (problem.file, problem.line, problem.key) == ("cfg.yaml", line, key), problem
    assert words in problem.hint + problem.message


def test_the_longest_ban_is_the_limit() -> None:
    assert MAX_BAN_SECONDS == 30 * 86400
    assert parse_config(CONFIG.replace("deny_for: 1h", "deny_for: 30d")).config.doors[1].deny_for


def test_a_services_ban_needs_a_service_to_deny() -> None:
    text = "doors:\n  trap:\n    sequence: [1220, 1221]\n    deny_for: 1h\n"
    problem = only_error(text)
    assert (problem.line, problem.key) == (2, "doors.trap.deny")
    assert "deny: host" in problem.hint
    assert parse_config(text + "    deny: host\n").config.doors[0].deny == "host"


# -- render -----------------------------------------------------------------------------------


def test_bans_are_dropped_first_and_spare_always_allow() -> None:
    lines = render_ruleset(parse_config(CONFIG).config).splitlines()
    prefix = "add rule inet knocknft input "
    rules = [line.removeprefix(prefix) for line in lines if line.startswith(prefix)]
    banned = [i for i, r in enumerate(rules) if r.endswith('drop comment "banned"')]
    established = rules.index("ct state established,related accept")
    knocks = next(i for i, r in enumerate(rules) if "log group" in r)
    assert len(banned) == 4 and max(banned) < established < knocks, "before anything accepts"
    assert rules[banned[0]] == (
        "ip saddr != { 198.18.1.0/24 } ip saddr @deny4 meta l4proto . th dport { tcp . 22 } "
        'drop comment "banned"'
    )
    assert (
        rules[banned[2]]
        == 'ip saddr != { 198.18.1.0/24 } ip saddr @deny_host4 drop comment "banned"'
    )
    assert rules[banned[3]] == 'ip6 saddr @deny_host6 drop comment "banned"'


def test_without_banning_doors_the_sets_are_kept_and_no_rule_looks_them_up() -> None:
    text = render_ruleset(parse_config(CONFIG.split("  banned1:", maxsplit=1)[0]).config)
    assert "add set inet knocknft deny_host6 { type ipv6_addr; flags timeout;" in text
    assert "@deny" not in text


# -- decide and the daemon --------------------------------------------------------------------


def test_a_banning_door_bans_before_any_line_and_grants_nothing() -> None:
    effects = decide([Opened(KNOCKER, BANNED1, 1000.0)], NothingPending(), native_grants=True)
    ban = Ban(KNOCKER, "banned1", 3600, "services")
    assert effects == [
        BanSources((ban,)),
        LogLine("info", "%s: %s: OPEN SESAME", (KNOCKER, "banned1"), limited=True),
        Audit("open", {"source": KNOCKER, "door": "banned1"}),
        ReportBan(ban),
        RunCommand("banned1", "logger banned 198.18.0.2", "198.18.0.2"),
    ]


def test_bans_and_grants_of_one_batch_go_in_grants_first() -> None:
    events = [Opened(KNOCKER6, BANNED3, 1.0), Opened(KNOCKER, SSH, 1.0)]
    kinds = [type(e).__name__ for e in decide(events, NothingPending(), native_grants=True)]
    assert kinds[:2] == ["GrantServices", "BanSources"]


def test_the_daemon_puts_the_ban_in_the_deny_set_and_close_lifts_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = parse_config(CONFIG).config
    nft = loaded_nft(config)
    daemon = Daemon(config, nft, RecordingRunner(), PendingStops(None), clock=lambda: 0.0)
    with caplog.at_level(logging.INFO, "knocknft"):
        daemon.execute([Opened(KNOCKER, BANNED1, 0.0), Opened(KNOCKER6, BANNED3, 0.0)])
    assert 'deny4 { 198.18.0.2 timeout 3600s comment "banned1" }' in nft.scripts[-1]
    assert "198.18.0.2: banned1: banned from the protected services for 3600s" in caplog.text
    assert "2001:db8::2: banned3: banned from this host for 86400s" in caplog.text
    assert (daemon.stats()["bans"], daemon.stats()["ban_failures"]) == (2, 0)
    bans = read_bans(nft, "knocknft")
    assert [(b.address, b.scope, b.timeout) for b in bans] == [
        (KNOCKER, "services", 3600),
        (KNOCKER6, "host", 86400),
    ]
    assert lift_bans(nft, "knocknft", KNOCKER6, "banned1") == []
    assert [b.address for b in lift_bans(nft, "knocknft", KNOCKER6, None)] == [KNOCKER6]
    assert [b.address for b in read_bans(nft, "knocknft")] == [KNOCKER]


def test_a_ban_the_kernel_refuses_is_logged_never_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = parse_config(CONFIG).config
    nft = loaded_nft(config)
    nft.refuse("apply", NftError("Error: Could not process rule: Too many open files in system"))
    daemon = Daemon(config, nft, RecordingRunner(), PendingStops(None), clock=lambda: 0.0)
    with caplog.at_level(logging.INFO, "knocknft"):
        daemon.execute([Opened(KNOCKER, BANNED1, 0.0)])
    assert "could not ban 198.18.0.2" in caplog.text
    assert "banned from" not in caplog.text
    assert (daemon.stats()["bans"], daemon.stats()["ban_failures"]) == (0, 1)


def test_the_kernel_listing_of_a_deny_set_reads_back_as_bans() -> None:
    listing = {
        "nftables": [
            {"metainfo": {}},
            {
                "set": {
                    "name": "deny_host6",
                    "timeout": 3600,
                    "elem": [
                        {
                            "elem": {
                                "val": "2001:db8::2",
                                "timeout": 60,
                                "expires": 59,
                                "comment": "t",
                            }
                        },
                        "2001:db8::3",
                        {"elem": {"val": "not an address"}},
                    ],
                }
            },
            {"set": {"name": "allow4", "elem": ["198.18.0.9"]}},
        ]
    }
    assert parse_deny_listing(listing) == [
        Ban(KNOCKER6, "t", 60, "host", 59),
        Ban(ipaddress.ip_address("2001:db8::3"), "", 3600, "host", None),
    ]


def test_open_by_hand_refuses_a_banning_door() -> None:
    config = parse_config(CONFIG).config
    with pytest.raises(UsageError, match="bans its knockers"):
        open_grant(loaded_nft(config), config, KNOCKER, BANNED1, None)
