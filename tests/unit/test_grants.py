"""Grants: element commands always carry a whole-second timeout; listings parse back to grants."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from knocknft.admin.status import format_table
from knocknft.config import PortSpec, format_seconds
from knocknft.core.grants import (
    Grant,
    check_timeout,
    parse_set_listing,
    render_grant,
    render_revoke,
)

A4 = ipaddress.ip_address("198.18.0.2")
A6 = ipaddress.ip_address("2001:db8::2")


@pytest.mark.parametrize("bad", [30.5, "30s", "30", None, True, 0, -1, 8 * 86400])
def test_timeouts_that_could_make_a_permanent_or_absurd_element_are_refused(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        check_timeout(bad)


def test_render_grant_refuses_a_float_timeout() -> None:
    with pytest.raises(TypeError):
        render_grant("knocknft", [Grant(A4, PortSpec(22), "ssh", 30.0)])  # type: ignore[arg-type]


def test_grant_renders_an_atomic_refresh_with_timeout_and_comment() -> None:
    text = render_grant(
        "knocknft", [Grant(A4, PortSpec(22), "ssh", 30), Grant(A6, PortSpec(53, "udp"), "dns", 60)]
    )
    assert text.splitlines() == [
        "add element inet knocknft allow4 { 198.18.0.2 . tcp . 22 timeout 30s }",
        "delete element inet knocknft allow4 { 198.18.0.2 . tcp . 22 }",
        'add element inet knocknft allow4 { 198.18.0.2 . tcp . 22 timeout 30s comment "ssh" }',
        "add element inet knocknft allow6 { 2001:db8::2 . udp . 53 timeout 60s }",
        "delete element inet knocknft allow6 { 2001:db8::2 . udp . 53 }",
        'add element inet knocknft allow6 { 2001:db8::2 . udp . 53 timeout 60s comment "dns" }',
    ]
    for line in text.splitlines():
        assert line.startswith("delete") or " timeout " in line


def test_revoke_works_whether_or_not_the_element_exists() -> None:
    assert render_revoke("t", [(A4, PortSpec(22))]).splitlines() == [
        "add element inet t allow4 { 198.18.0.2 . tcp . 22 timeout 1s }",
        "delete element inet t allow4 { 198.18.0.2 . tcp . 22 }",
    ]


def test_comment_injection_is_refused() -> None:
    with pytest.raises(ValueError):
        render_grant("t", [Grant(A4, PortSpec(22), 'x" }; flush ruleset; #', 30)])


LISTING: dict[str, Any] = {
    "nftables": [
        {"metainfo": {"version": "1.0.6"}},
        {
            "set": {
                "family": "inet",
                "name": "allow4",
                "table": "knocknft",
                "type": ["ipv4_addr", "inet_proto", "inet_service"],
                "timeout": 30,
                "elem": [
                    {
                        "elem": {
                            "val": {"concat": ["198.18.0.2", "tcp", 22]},
                            "expires": 12,
                            "comment": "ssh",
                        }
                    },
                    {
                        "elem": {
                            "val": {"concat": ["198.18.0.1", "udp", 53]},
                            "timeout": 600,
                            "expires": 599,
                            "comment": "dns",
                        }
                    },
                    {"elem": {"val": "garbage"}},
                ],
            }
        },
    ]
}


def test_listing_parses_to_grants_using_the_set_default_timeout() -> None:
    grants = parse_set_listing(LISTING)
    assert grants == [
        Grant(ipaddress.ip_address("198.18.0.1"), PortSpec(53, "udp"), "dns", 600, 599),
        Grant(A4, PortSpec(22), "ssh", 30, 12),
    ]
    assert grants[1].to_json() == {
        "address": "198.18.0.2",
        "family": "ipv4",
        "door": "ssh",
        "service": "22/tcp",
        "port": 22,
        "protocol": "tcp",
        "timeout": 30,
        "expires_in": 12,
    }


def test_human_table() -> None:
    text = format_table(parse_set_listing(LISTING))
    assert text.splitlines()[0].split() == ["ADDRESS", "DOOR", "SERVICE", "EXPIRES", "IN"]
    assert "198.18.0.2  ssh   22/tcp   12s" in text
    assert format_table([]) == "no open grants\n"


@pytest.mark.parametrize(
    ("seconds", "text"), [(5, "5s"), (65, "1m05s"), (3725, "1h02m05s"), (None, "-")]
)
def test_format_seconds(seconds: int | None, text: str) -> None:
    assert format_seconds(seconds) == text
