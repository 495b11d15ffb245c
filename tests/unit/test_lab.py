"""The lab's spoofed sources stay inside the test range and away from the lab's own hosts."""

from __future__ import annotations

import ipaddress

from knocklab.lab import SPOOFED_SOURCES, Lab, spoofed_source, spoofed_syn

TEST_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
LAB_LINK = ipaddress.IPv4Network("198.18.0.0/24")


def test_spoofed_sources_are_distinct_in_range_and_off_the_lab_link() -> None:
    sources = [spoofed_source(i) for i in range(SPOOFED_SOURCES)]
    assert len(set(sources)) == SPOOFED_SOURCES > 65536, "enough to overfill the default cap"
    assert all(s in TEST_RANGE and s not in LAB_LINK for s in sources)
    assert str(sources[0]) == "198.19.0.0" and str(sources[65536]) == "198.18.128.0"
    assert spoofed_source(SPOOFED_SOURCES) == sources[0], "wraps"


def test_spoofed_syn_is_an_ipv4_syn_from_the_spoofed_source() -> None:
    packet = spoofed_syn(258, Lab.SERVER_V4, 7000)
    assert ipaddress.IPv4Address(packet[12:16]) == spoofed_source(258)
    assert ipaddress.IPv4Address(packet[16:20]) == ipaddress.IPv4Address(Lab.SERVER_V4)
    assert int.from_bytes(packet[22:24], "big") == 7000 and packet[33] == 0x02
