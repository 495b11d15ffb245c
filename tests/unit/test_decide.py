"""What engine events mean, as plain lists of effects: grants, revokes, commands, stop records."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

from knocknft.config import Door, IPAddress, PortSpec, parse_config
from knocknft.core.decide import (
    Audit,
    ExtendStop,
    GrantServices,
    KnockLine,
    LogLine,
    MarkOneTime,
    ReportGrant,
    Revocation,
    RevokeServices,
    RunCommand,
    ScheduleStop,
    decide,
    stop_command_for,
)
from knocknft.core.events import (
    DoorDisabled,
    Evicted,
    Invalidated,
    OneTimeUsed,
    Opened,
    Progress,
    TimedOut,
)
from knocknft.core.grants import Grant

KNOCKER = ipaddress.ip_address("198.18.0.2")
KNOCKER6 = ipaddress.ip_address("2001:db8::2")
AT = 1000.0

CONFIG = """\
doors:
  openSSH:
    sequence: [2000/tcp, 3000/udp, 4000/tcp]
    open: [22/tcp, 443/tcp]
    open_for: 1h
  closeSSH:
    sequence: [4000/tcp, 3000/udp, 2000/tcp]
    close: [22/tcp]
  web:
    sequence: [5000/tcp, 6000/tcp]
    open: [8080/tcp]
    open_for: 10m
    close: [22/tcp]
  shell:
    sequence: [7000/tcp, 8000/tcp]
    start_command: 'nft add element inet fw allow { %IP% }'
    start_command_6: 'nft add element inet fw allow6 { %IP% }'
    stop_command: 'nft delete element inet fw allow { %IP% }'
    cmd_timeout: 30s
"""
OPEN_SSH, CLOSE_SSH, WEB, SHELL = parse_config(CONFIG).config.doors
START = "nft add element inet fw allow { 198.18.0.2 }"
STOP = "nft delete element inet fw allow { 198.18.0.2 }"


class Pending:
    """The stop commands pending, as (door, address) pairs."""

    def __init__(self, *pending: tuple[str, IPAddress]) -> None:
        self.pending = set(pending)

    def is_pending(self, door: str, address: IPAddress) -> bool:
        return (door, address) in self.pending


def opening(door: Door, source: IPAddress = KNOCKER) -> list[object]:
    return [
        LogLine("info", "%s: %s: OPEN SESAME", (source, door.name), limited=True),
        Audit("open", {"source": source, "door": door.name}),
    ]


def grant(service: int, door: Door, timeout: int) -> Grant:
    return Grant(KNOCKER, PortSpec(service), door.name, timeout)


def test_an_opened_door_grants_its_services_before_any_line() -> None:
    effects = decide([Opened(KNOCKER, OPEN_SSH, AT)], Pending(), native_grants=True)
    ssh, https = grant(22, OPEN_SSH, 3600), grant(443, OPEN_SSH, 3600)
    assert effects == [
        GrantServices((ssh, https)),
        *opening(OPEN_SSH),
        ReportGrant(ssh),
        ReportGrant(https),
    ]


def test_a_closing_door_revokes_only() -> None:
    effects = decide([Opened(KNOCKER, CLOSE_SSH, AT)], Pending(), native_grants=True)
    assert effects == [
        RevokeServices((Revocation(KNOCKER, PortSpec(22), "closeSSH"),)),
        *opening(CLOSE_SSH),
    ]


def test_revokes_go_before_grants_and_each_door_reports_its_own_grants() -> None:
    events = [Opened(KNOCKER, OPEN_SSH, AT), Opened(KNOCKER, WEB, AT)]
    effects = decide(events, Pending(), native_grants=True)
    ssh, https, web = grant(22, OPEN_SSH, 3600), grant(443, OPEN_SSH, 3600), grant(8080, WEB, 600)
    assert effects == [
        RevokeServices((Revocation(KNOCKER, PortSpec(22), "web"),)),
        GrantServices((ssh, https, web)),
        *opening(OPEN_SSH),
        ReportGrant(ssh),
        ReportGrant(https),
        *opening(WEB),
        ReportGrant(web),
    ]


def test_the_stop_is_scheduled_before_the_start_command_runs_after_the_lines() -> None:
    effects = decide([Opened(KNOCKER, SHELL, AT)], Pending(), native_grants=True)
    assert effects == [
        *opening(SHELL),
        ScheduleStop("shell", KNOCKER, AT + 30),
        RunCommand("shell", START, "198.18.0.2"),
    ]
    # The record names no command: the executor renders it from the config.
    assert stop_command_for(SHELL, KNOCKER) == STOP


def test_a_knock_while_the_stop_is_pending_extends_it_and_runs_no_second_start() -> None:
    effects = decide([Opened(KNOCKER, SHELL, AT)], Pending(("shell", KNOCKER)), native_grants=True)
    assert effects == [
        *opening(SHELL),
        ExtendStop("shell", KNOCKER, AT + 30),
        LogLine(
            "info",
            "%s: %s: still open; stop command moved to %ds from now",
            (KNOCKER, "shell", 30),
            limited=True,
        ),
        Audit("refresh", {"source": KNOCKER, "door": "shell", "stop_in": 30}),
    ]


def test_two_opens_in_one_batch_start_once_and_then_extend() -> None:
    events = [Opened(KNOCKER, SHELL, AT), Opened(KNOCKER, SHELL, AT + 1)]
    effects = decide(events, Pending(), native_grants=True)
    commands = [e for e in effects if isinstance(e, RunCommand | ScheduleStop | ExtendStop)]
    assert commands == [
        ScheduleStop("shell", KNOCKER, AT + 30),
        RunCommand("shell", START, "198.18.0.2"),
        ExtendStop("shell", KNOCKER, AT + 31),
    ]


def test_a_stop_pending_for_another_source_or_door_is_no_refresh() -> None:
    pending = Pending(("shell", KNOCKER6), ("web", KNOCKER))
    effects = decide([Opened(KNOCKER, SHELL, AT)], pending, native_grants=True)
    assert RunCommand("shell", START, "198.18.0.2") in effects
    assert not any(isinstance(e, ExtendStop) for e in effects)


def test_ipv6_sources_get_start_command_6_and_the_plain_stop_command() -> None:
    effects = decide([Opened(KNOCKER6, SHELL, AT)], Pending(), native_grants=True)
    assert effects[2:] == [
        ScheduleStop("shell", KNOCKER6, AT + 30),
        RunCommand("shell", "nft add element inet fw allow6 { 2001:db8::2 }", "2001:db8::2"),
    ]
    assert stop_command_for(SHELL, KNOCKER6) == "nft delete element inet fw allow { 2001:db8::2 }"


def test_under_a_knockd_conf_commands_are_the_only_effect() -> None:
    door = dataclasses.replace(WEB, start_command="open %IP%", stop_command=None)
    effects = decide([Opened(KNOCKER, door, AT)], Pending(), native_grants=False)
    assert effects == [*opening(door), RunCommand("web", "open 198.18.0.2", "198.18.0.2")]


def test_a_used_one_time_line_is_marked() -> None:
    door = dataclasses.replace(OPEN_SSH, one_time_sequences=Path("/etc/knocknft/otp"))
    effects = decide([OneTimeUsed(door, 3)], Pending(), native_grants=True)
    assert effects == [MarkOneTime("openSSH", Path("/etc/knocknft/otp"), 3)]


def test_a_disabled_door_is_logged_and_audited() -> None:
    effects = decide([DoorDisabled(OPEN_SSH, "all used")], Pending(), native_grants=True)
    assert effects == [
        LogLine(
            "warning",
            "%s: door disabled: %s; the daemon keeps running",
            ("openSSH", "all used"),
        ),
        Audit("door_disabled", {"door": "openSSH", "reason": "all used"}),
    ]


def test_attempt_events_are_their_own_per_knock_lines_and_nothing_else() -> None:
    events: list[KnockLine] = [
        Progress(KNOCKER, OPEN_SSH, 1),
        Evicted(KNOCKER6, OPEN_SSH, 1),
        TimedOut(KNOCKER, SHELL, 1),
        Invalidated(KNOCKER, WEB, 1),
    ]
    effects = decide(events, Pending(("shell", KNOCKER)), native_grants=True)
    assert effects == events
    # The same objects: deciding allocates nothing per knock under a flood.
    assert all(e is f for e, f in zip(effects, events, strict=True))
