"""The lab's spoofed knocks: valid SYNs from sources inside the test ranges and away from the
lab's own hosts, enough of them to overfill the engine's default cap."""

from __future__ import annotations

import ipaddress

import pytest

from knocklab.lab import Lab
from knocklab.packets import SpoofedSyns, tcp_segment

TEST_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
LAB_LINK = ipaddress.IPv4Network("198.18.0.0/24")


def test_spoofed_sources_are_distinct_in_range_and_off_the_lab_link() -> None:
    knocks = SpoofedSyns(4, Lab.SERVER_V4, 7000)
    sources = [ipaddress.IPv4Address(knocks.source(i)) for i in range(knocks.count)]
    assert len(set(sources)) == knocks.count > 65536, "enough to overfill the default cap"
    assert all(s in TEST_RANGE and s not in LAB_LINK for s in sources)
    assert sources[0] == ipaddress.IPv4Address("198.18.64.0")
    assert sources[-1] == ipaddress.IPv4Address("198.19.255.255")
    with pytest.raises(ValueError, match="only 114688"):
        knocks.packet(knocks.count)
    v6 = SpoofedSyns(6, Lab.SERVER_V6, 7000)
    assert ipaddress.IPv6Address(v6.source(10**6)) in ipaddress.IPv6Network("2001:db8::/32")


def test_a_spoofed_syn_is_an_ipv4_syn_from_the_spoofed_source() -> None:
    knocks = SpoofedSyns(4, Lab.SERVER_V4, 7000)
    packet = knocks.packet(258)
    assert ipaddress.IPv4Address(packet[12:16]) == ipaddress.IPv4Address(knocks.source(258))
    assert ipaddress.IPv4Address(packet[16:20]) == ipaddress.IPv4Address(Lab.SERVER_V4)
    assert int.from_bytes(packet[22:24], "big") == 7000 and packet[33] == 0x02
    assert list(knocks.packets(258, 2)) == [packet, knocks.packet(259)]


@pytest.mark.parametrize(("family", "destination"), [(4, Lab.SERVER_V4), (6, Lab.SERVER_V6)])
@pytest.mark.parametrize("index", [0, 1, 255, 65535, 114687])
def test_spoofed_knocks_carry_the_checksum_tcp_segment_computes(
    family: int, destination: str, index: int
) -> None:
    knocks = SpoofedSyns(family, destination, 7000)
    packet = knocks.packet(index)
    header = 20 if family == 4 else 40
    source = knocks.source(index)
    assert packet[header:] == tcp_segment(source, destination, 40000, 7000, 0x02)
    at = 12 if family == 4 else 8
    width = 4 if family == 4 else 16
    assert ipaddress.ip_address(packet[at : at + width]) == ipaddress.ip_address(source)


def test_tcp_segment_checksum_is_the_internet_checksum() -> None:
    # RFC 1071: summing the pseudo-header and the segment, checksum included, gives all ones.
    segment = tcp_segment(Lab.CLIENT_V4, Lab.SERVER_V4, 40000, 22, 0x12)
    pseudo = (
        ipaddress.IPv4Address(Lab.CLIENT_V4).packed
        + ipaddress.IPv4Address(Lab.SERVER_V4).packed
        + bytes([0, 6, 0, len(segment)])
    )
    data = pseudo + segment
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert total == 0xFFFF
