"""Decoding IP packets into knocks: real payloads from saved NFLOG captures, then crafted cases."""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest

from knocknft.netlink import packet
from knocknft.netlink.nflog_messages import NFULNL_PACKET_TYPE, MarshalNflog
from knocknft.netlink.packet import Discard, KnockPacket, decode_packet

DATA = Path(__file__).resolve().parents[1] / "data" / "nflog"

CLIENT4, SERVER4 = IPv4Address("198.18.0.2"), IPv4Address("198.18.0.1")
CLIENT6, SERVER6 = IPv6Address("2001:db8::2"), IPv6Address("2001:db8::1")
SYN = 0x02

# source, destination, protocol, dport, TCP flags, source port, TCP sequence number
Expected = tuple[IPv4Address | IPv6Address, IPv4Address | IPv6Address, str, int, int, int, int]


def saved_payloads(case: str) -> list[bytes]:
    """The IP packets (NFULA_PAYLOAD) of every logged packet in a saved capture."""
    payloads = []
    for line in (DATA / f"{case}.hex").read_text().splitlines():
        if line and not line.startswith("#"):
            for msg in MarshalNflog().parse(bytes.fromhex(line)):
                if msg["header"]["type"] == NFULNL_PACKET_TYPE:
                    payloads.append(msg.get_attr("NFULA_PAYLOAD"))
    return payloads


# --- real packets ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("ipv4_tcp_syn", (CLIENT4, SERVER4, "tcp", 7001, SYN, 59000, 736941233)),
        ("ipv4_udp", (CLIENT4, SERVER4, "udp", 7002, 0, 40000, 0)),
        ("ipv6_tcp", (CLIENT6, SERVER6, "tcp", 7003, SYN, 41142, 3743707913)),
        ("ipv6_udp", (CLIENT6, SERVER6, "udp", 7004, 0, 40001, 0)),
        ("ipv6_ext_headers", (CLIENT6, SERVER6, "udp", 7005, 0, 40002, 0)),
        ("ipv4_ip_options", (CLIENT4, SERVER4, "tcp", 7006, SYN, 37144, 3263055805)),
        ("copy_range", (CLIENT4, SERVER4, "udp", 7200, 0, 40003, 0)),
    ],
)
def test_saved_knocks_decode(case: str, expected: Expected) -> None:
    [payload] = saved_payloads(case)
    source, destination, protocol, dport, flags, sport, seq = expected
    decoded = decode_packet(payload, 1234.5, 3)
    assert decoded == KnockPacket(
        source, destination, protocol, dport, flags, 3, 1234.5, sport=sport, seq=seq
    )


def test_saved_ext_headers_really_has_hop_by_hop_and_destination_options() -> None:
    [payload] = saved_payloads("ipv6_ext_headers")
    assert payload[6] == 0  # hop-by-hop follows the IPv6 header
    assert payload[40] == 60  # then destination options
    assert payload[48] == 17  # then UDP


def test_saved_ip_options_really_has_a_longer_header() -> None:
    [payload] = saved_payloads("ipv4_ip_options")
    assert payload[0] & 0x0F == 7


def test_saved_non_knocks_say_why() -> None:
    assert [decode_packet(p, 0.0) for p in saved_payloads("ipv4_icmp")] == [Discard.NOT_TCP_OR_UDP]
    assert [decode_packet(p, 0.0) for p in saved_payloads("ipv4_fragment")] == [Discard.FRAGMENT]
    assert [decode_packet(p, 0.0) for p in saved_payloads("truncated")] == [Discard.TRUNCATED]


def test_saved_ipv6_fragments_first_is_a_knock_the_rest_are_not() -> None:
    first, *rest = (decode_packet(p, 0.0) for p in saved_payloads("ipv6_fragment"))
    assert isinstance(first, KnockPacket)
    assert (first.protocol, first.dport) == ("udp", 7008)
    assert rest == [Discard.FRAGMENT, Discard.FRAGMENT]


def test_saved_truncated_payload_is_the_rule_snaplen() -> None:
    [payload] = saved_payloads("truncated")
    assert len(payload) == 30
    assert Discard.TRUNCATED.malformed


# --- crafted packets ---------------------------------------------------------------


def tcp(
    dport: int = 7001, flags: int = SYN, data_offset: int = 5, sport: int = 40000, seq: int = 1
) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq, 0, data_offset << 4, flags, 512, 0, 0)


def udp(dport: int = 7002) -> bytes:
    return struct.pack("!HHHH", 40000, dport, 8, 0)


def ipv4(
    protocol: int, rest: bytes, *, options: bytes = b"", fragment: int = 0, version: int = 4
) -> bytes:
    ihl = 5 + len(options) // 4
    header = struct.pack(
        "!BBHHHBBH4s4s",
        version << 4 | ihl,
        0,
        20 + len(options) + len(rest),
        1,
        fragment,
        64,
        protocol,
        0,
        CLIENT4.packed,
        SERVER4.packed,
    )
    return header + options + rest


def ipv6(next_header: int, rest: bytes) -> bytes:
    header = struct.pack(
        "!IHBB16s16s", 6 << 28, len(rest), next_header, 64, CLIENT6.packed, SERVER6.packed
    )
    return header + rest


def options_header(next_header: int, units: int = 0) -> bytes:
    """Hop-by-hop, routing or destination options: (units + 1) * 8 bytes."""
    return bytes([next_header, units]) + bytes(6 + units * 8)


def fragment_header(next_header: int, offset: int, more: bool) -> bytes:
    return struct.pack("!BBHI", next_header, 0, offset << 3 | more, 0x1234)


def ah_header(next_header: int) -> bytes:
    # Length field 4: (4 + 2) * 4 = 24 bytes, RFC 4302.
    return bytes([next_header, 4]) + bytes(22)


def test_ipv4_tcp_with_ece_and_cwr_keeps_the_raw_flag_byte() -> None:
    result = decode_packet(ipv4(6, tcp(flags=0xC2)), 0.0)
    assert isinstance(result, KnockPacket)
    assert result.tcp_flags == 0xC2


def test_ipv4_options_are_skipped_by_ihl() -> None:
    result = decode_packet(ipv4(17, udp(9000), options=bytes([1, 1, 1, 0] * 10)), 0.0)
    assert isinstance(result, KnockPacket)
    assert result.dport == 9000


def test_ipv4_first_fragment_is_a_knock_later_ones_are_not() -> None:
    more_fragments = 0x2000
    assert isinstance(decode_packet(ipv4(17, udp(), fragment=more_fragments), 0.0), KnockPacket)
    assert decode_packet(ipv4(17, udp(), fragment=more_fragments | 185), 0.0) == Discard.FRAGMENT
    assert decode_packet(ipv4(17, b"", fragment=1), 0.0) == Discard.FRAGMENT


@pytest.mark.parametrize(
    ("protocol", "chain", "expected_dport"),
    [
        pytest.param(
            0, options_header(43) + options_header(17) + udp(8001), 8001, id="hbh-routing"
        ),
        pytest.param(
            43, options_header(60, 2) + options_header(6) + tcp(8002), 8002, id="routing-dst"
        ),
        pytest.param(51, ah_header(17) + udp(8003), 8003, id="ah"),
        pytest.param(44, fragment_header(6, 0, more=True) + tcp(8004), 8004, id="first-fragment"),
        pytest.param(
            0,
            options_header(44) + fragment_header(60, 0, more=True) + options_header(17) + udp(8005),
            8005,
            id="hbh-fragment-dst",
        ),
    ],
)
def test_ipv6_extension_headers_are_walked(
    protocol: int, chain: bytes, expected_dport: int
) -> None:
    result = decode_packet(ipv6(protocol, chain), 0.0)
    assert isinstance(result, KnockPacket)
    assert result.dport == expected_dport


@pytest.mark.parametrize(
    ("protocol", "rest", "reason"),
    [
        pytest.param(44, fragment_header(17, 100, more=False), Discard.FRAGMENT, id="fragment"),
        pytest.param(
            0,
            options_header(44) + fragment_header(6, 1, more=True),
            Discard.FRAGMENT,
            id="hbh-fragment",
        ),
        pytest.param(50, bytes(16), Discard.ENCRYPTED, id="esp"),
        pytest.param(0, options_header(50) + bytes(16), Discard.ENCRYPTED, id="hbh-esp"),
        pytest.param(59, b"", Discard.NO_NEXT_HEADER, id="no-next"),
        pytest.param(60, options_header(59), Discard.NO_NEXT_HEADER, id="dst-no-next"),
        pytest.param(58, bytes(8), Discard.NOT_TCP_OR_UDP, id="icmpv6"),
        pytest.param(132, bytes(12), Discard.NOT_TCP_OR_UDP, id="sctp"),
        pytest.param(60, options_header(60)[:6], Discard.TRUNCATED, id="short-ext-header"),
        pytest.param(60, options_header(17, 3)[:20], Discard.TRUNCATED, id="ext-header-past-end"),
        pytest.param(
            60,
            options_header(60) * 8 + options_header(17) + udp(),
            Discard.HEADER_CHAIN_TOO_LONG,
            id="nine-ext-headers",
        ),
    ],
)
def test_ipv6_non_knocks(protocol: int, rest: bytes, reason: Discard) -> None:
    assert decode_packet(ipv6(protocol, rest), 0.0) == reason


def test_a_chain_of_eight_extension_headers_is_still_allowed() -> None:
    rest = options_header(60) * 7 + options_header(17) + udp(8006)
    result = decode_packet(ipv6(0, rest), 0.0)
    assert isinstance(result, KnockPacket)
    assert result.dport == 8006


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", Discard.TRUNCATED),
        (ipv4(6, tcp(), version=5), Discard.BAD_IP_VERSION),
        (bytes([0x45]) + bytes(18), Discard.TRUNCATED),
        (ipv6(17, udp())[:39], Discard.TRUNCATED),
        (bytes([0x44]) + ipv4(6, tcp())[1:], Discard.BAD_HEADER_LENGTH),
        (ipv4(6, tcp(data_offset=4)), Discard.BAD_HEADER_LENGTH),
        (ipv4(6, tcp()[:19]), Discard.TRUNCATED),
        (ipv4(17, udp()[:7]), Discard.TRUNCATED),
        (ipv4(6, tcp(), options=bytes(40))[:50], Discard.TRUNCATED),
        (ipv4(1, bytes(8)), Discard.NOT_TCP_OR_UDP),
        (ipv4(50, bytes(8)), Discard.ENCRYPTED),
    ],
)
def test_malformed_and_other_packets(data: bytes, reason: Discard) -> None:
    assert decode_packet(data, 0.0) == reason


@pytest.mark.parametrize("case", ["ipv4_tcp_syn", "ipv6_ext_headers", "ipv4_ip_options"])
def test_every_prefix_shorter_than_the_headers_is_truncated(case: str) -> None:
    [payload] = saved_payloads(case)
    full = decode_packet(payload, 0.0)
    assert isinstance(full, KnockPacket)
    headers_end = next(
        n for n in range(len(payload) + 1) if decode_packet(payload[:n], 0.0) == full
    )
    for n in range(headers_end):
        assert decode_packet(payload[:n], 0.0) == Discard.TRUNCATED


def test_decodes_a_window_of_a_larger_buffer_without_copying() -> None:
    inner = ipv4(17, udp(7777))
    buffer = bytearray(b"\xff" * 13 + inner + b"\xff" * 7)
    result = decode_packet(memoryview(buffer), 5.0, 9, 13, 13 + len(inner))
    assert result == KnockPacket(CLIENT4, SERVER4, "udp", 7777, 0, 9, 5.0, sport=40000, seq=0)
    assert decode_packet(buffer, 0.0, 0, 13, 13 + len(inner) - 1) == Discard.TRUNCATED
    assert decode_packet(buffer, 0.0, 0, 13, len(buffer) + 1) == Discard.TRUNCATED
    assert decode_packet(buffer, 0.0, 0, -1) == Discard.TRUNCATED


@pytest.mark.parametrize("build", [ipv4, ipv6])
def test_tcp_source_port_and_sequence_number_name_the_connection(
    build: Callable[[int, bytes], bytes],
) -> None:
    """What tells a retransmitted SYN from a new connection: both fields, full width."""
    result = decode_packet(build(6, tcp(7001, sport=65535, seq=0xFFFFFFFE)), 0.0)
    assert isinstance(result, KnockPacket)
    assert (result.sport, result.seq, result.dport) == (65535, 0xFFFFFFFE, 7001)
    udp_result = decode_packet(build(17, udp(7002)), 0.0)
    assert isinstance(udp_result, KnockPacket)
    assert (udp_result.sport, udp_result.seq) == (40000, 0)


def test_knock_packet_is_an_ordinary_frozen_dataclass() -> None:
    decoded = decode_packet(ipv6(6, tcp(7003)), 2.5, 4)
    built = KnockPacket(CLIENT6, SERVER6, "tcp", 7003, SYN, 4, 2.5, sport=40000, seq=1)
    assert decoded == built
    assert hash(decoded) == hash(built)
    assert repr(decoded) == repr(built)
    assert dataclasses.asdict(decoded) == dataclasses.asdict(built)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.dport = 1  # type: ignore[misc]
    # The decoder builds its packets another way (see decode_packet): they are frozen all the same.
    assert type(decoded) is KnockPacket
    with pytest.raises(dataclasses.FrozenInstanceError):
        decoded.dport = 1  # type: ignore[misc]


def test_malformed_reasons_are_told_apart_from_non_knocks() -> None:
    assert {reason for reason in Discard if reason.malformed} == {
        Discard.TRUNCATED,
        Discard.BAD_IP_VERSION,
        Discard.BAD_HEADER_LENGTH,
        Discard.HEADER_CHAIN_TOO_LONG,
    }
    assert Discard.FRAGMENT.value == "fragment"
    assert isinstance(Discard.FRAGMENT, str)  # so reasons key counters as plain words


def test_address_caches_stay_bounded_under_a_spoofed_flood() -> None:
    for n in range(3 * packet._CACHE_LIMIT):
        data = bytearray(ipv4(17, udp()))
        data[12:16] = n.to_bytes(4, "big")
        result = decode_packet(data, 0.0)
        assert isinstance(result, KnockPacket)
        assert result.source == ip_address(n)
        assert len(packet._v4_cache) <= packet._CACHE_LIMIT
