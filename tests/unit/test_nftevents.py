"""nf_tables notifications, decoded from what a real kernel sent (tests/data/nftevents, captured
in a namespace while knocknft applied, opened, closed and `nft flush ruleset` ran)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from knocknft.config import PortSpec
from knocknft.netlink.nftevents import (
    ElementAdded,
    ElementDeleted,
    RulesDeleted,
    TableDeleted,
    TableEvent,
    decode_events,
)

DATA = Path(__file__).parent.parent / "data" / "nftevents"
A4 = ipaddress.ip_address("198.18.0.2")
A6 = ipaddress.ip_address("2001:db8::2")
SSH = PortSpec(22)


def events(name: str, table: str = "knocknft") -> list[TableEvent]:
    found: list[TableEvent] = []
    for line in (DATA / f"{name}.hex").read_text().split():
        found += decode_events(bytes.fromhex(line), table)
    return found


def test_an_apply_says_nothing_about_grants_or_deletion() -> None:
    """Its anonymous sets' elements and the chain it replaces are no news to the keeper."""
    assert events("apply") == []


def test_a_grant_is_add_delete_add_and_the_last_add_carries_door_and_expiry() -> None:
    first, deleted, added = events("open-v4-default-timeout")
    assert first == ElementAdded(A4, SSH, "", 30.0)
    assert deleted == ElementDeleted(A4, SSH)
    assert added == ElementAdded(A4, SSH, "ssh", 30.0)


def test_an_ipv6_grant_with_its_own_timeout() -> None:
    assert events("open-v6-90s")[-1] == ElementAdded(A6, SSH, "ssh", 90.0)


def test_close_ends_with_a_delete() -> None:
    assert events("close-v4")[-1] == ElementDeleted(A4, SSH)


def test_flush_ruleset_deletes_the_table_without_deleting_each_element() -> None:
    assert events("flush-ruleset") == [RulesDeleted(), TableDeleted()]


@pytest.mark.parametrize("name", ["open-v4-default-timeout", "flush-ruleset"])
def test_another_tables_news_is_not_ours(name: str) -> None:
    assert events(name, table="other") == []


def test_truncated_or_garbage_input_decodes_to_nothing() -> None:
    data = bytes.fromhex((DATA / "open-v6-90s.hex").read_text().split()[0])
    for cut in range(0, len(data), 7):
        decode_events(data[:cut], "knocknft")
    assert decode_events(b"\xff" * 64, "knocknft") == []
