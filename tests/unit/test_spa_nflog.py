"""The SPA reader's decoder: saved kernel messages and crafted packets to (source, UDP payload),
and hostile bytes to a counted drop, never an exception."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from knocknft.netlink.nflog_decoder import NflogCounters
from knocknft.netlink.packet import Discard
from knocknft.netlink.spa_nflog import SpaDatagram, SpaNflogDecoder, decode_datagram
from tests.unit.spa_nflog_support import CLIENT4, CLIENT6, message, udp4, udp6

DATA = Path(__file__).resolve().parents[1] / "data" / "nflog"
SPA = b"9X3ShPtGVJWu1s/vJRRh0lq6NBETddeKSenFE+hW3VOScD98h2BZZXQNkdTlqt9JzCECBcWGJrQUCujMOR"


def saved(case: str) -> list[bytes]:
    lines = (DATA / f"{case}.hex").read_text().splitlines()
    return [bytes.fromhex(line) for line in lines if line and not line.startswith("#")]


def decode_saved(case: str) -> tuple[list[SpaDatagram], NflogCounters]:
    decoder = SpaNflogDecoder()
    found = [d for buffer in saved(case) for d in decoder.decode(buffer, 0.0)]
    return found, decoder.counters


# --- saved kernel messages ---------------------------------------------------------------


def test_saved_udp_datagrams_give_their_source_and_payload() -> None:
    for case, source in (
        ("ipv4_udp", IPv4Address(CLIENT4)),
        ("ipv6_udp", IPv6Address(CLIENT6)),
        ("ipv6_ext_headers", IPv6Address(CLIENT6)),
    ):
        found, counters = decode_saved(case)
        assert found == [SpaDatagram(source, b"knock")], case
        assert counters.balanced() and counters.decoded == 1


def test_saved_packets_that_hold_no_whole_datagram_are_counted_drops() -> None:
    for case, outcome in (
        ("ipv4_tcp_syn", {"not-tcp-or-udp": 1}),
        ("ipv4_icmp", {"not-tcp-or-udp": 1}),
        ("ipv4_fragment", {"fragment": 1}),
        ("ipv6_fragment", {"fragment": 3}),  # the first fragment too: its payload is a piece
        ("truncated", {"not-tcp-or-udp": 1}),  # a SYN cut short: no UDP, cut or not
    ):
        found, counters = decode_saved(case)
        assert found == [] and counters.non_knock == outcome, case
        assert counters.balanced()


def test_a_datagram_longer_than_its_copy_is_cut_short_not_read() -> None:
    # copy_range.hex: a datagram of 400 bytes copied as 128, as the knock reader asks.
    found, counters = decode_saved("copy_range")
    assert found == [] and counters.malformed == {"truncated": 1}


def test_sequence_gaps_count_the_packets_the_kernel_lost() -> None:
    decoder = SpaNflogDecoder(next_seq=0)
    decoder.decode(message(udp4(SPA), seq=0) + message(udp4(SPA), seq=3), 0.0)
    assert decoder.counters.lost == 2 and decoder.counters.decoded == 2


# --- crafted packets ---------------------------------------------------------------------


def test_whole_datagrams_of_both_families() -> None:
    assert decode_datagram(udp4(SPA)) == SpaDatagram(IPv4Address(CLIENT4), SPA)
    assert decode_datagram(udp6(SPA)) == SpaDatagram(IPv6Address(CLIENT6), SPA)
    hop_by_hop = struct.pack("!BB6x", 17, 0)
    assert decode_datagram(udp6(SPA, hop_by_hop, first=0)) == SpaDatagram(IPv6Address(CLIENT6), SPA)


def test_the_udp_length_not_the_copy_ends_the_payload() -> None:
    assert decode_datagram(udp4(SPA) + b"\0" * 6) == SpaDatagram(IPv4Address(CLIENT4), SPA)


def test_pieces_and_odd_packets_are_named() -> None:
    first_fragment = bytearray(udp4(SPA))
    struct.pack_into("!H", first_fragment, 6, 0x2000)  # more fragments follow
    fragment6 = struct.pack("!BxHI", 17, 0x0001, 7)  # offset 0, more fragments
    chain = struct.pack("!BB6x", 0, 0) * 9
    cases = {
        b"": Discard.TRUNCATED,
        bytes(first_fragment): Discard.FRAGMENT,
        udp6(SPA, fragment6, first=44): Discard.FRAGMENT,
        udp6(SPA, chain, first=0): Discard.HEADER_CHAIN_TOO_LONG,
        b"\x55" + udp4(SPA)[1:]: Discard.BAD_IP_VERSION,
        b"\x44" + udp4(SPA)[1:]: Discard.BAD_HEADER_LENGTH,
        udp4(SPA)[:20]: Discard.TRUNCATED,
        udp4(SPA)[:-1]: Discard.TRUNCATED,
        udp6(SPA)[:39]: Discard.TRUNCATED,
    }
    for packet, reason in cases.items():
        assert decode_datagram(packet) == reason, packet.hex()


def test_messages_without_a_payload_or_cut_short_are_malformed() -> None:
    decoder = SpaNflogDecoder()
    assert decoder.decode(message(None) + message(udp4(SPA))[:30], 0.0) == []
    assert decoder.counters.malformed == {"no-payload": 1, "netlink-truncated": 1}
    assert decoder.counters.balanced()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 199))
def test_hostile_bytes_are_counted_never_raised(junk: bytes, cut: int) -> None:
    decoder = SpaNflogDecoder()
    whole = message(udp4(junk))
    for buffer in (junk, message(junk), whole, whole[:cut], message(udp6(junk)[:cut])):
        found = decoder.decode(buffer, 0.0)
        assert all(isinstance(d, SpaDatagram) for d in found)
    assert decoder.counters.balanced()
    assert decoder.counters.decoded >= 1  # the whole one, at least
