"""Fuzzing the NFLOG decoders: whatever the bytes, no exception and the counters add up."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from knocknft.netlink.base import iter_messages
from knocknft.netlink.nflog_decoder import NflogCounters, NflogDecoder
from knocknft.netlink.nflog_messages import NFULNL_PACKET_TYPE, MarshalNflog
from knocknft.netlink.packet import Discard, KnockPacket, decode_packet

DATA = Path(__file__).resolve().parents[1] / "data" / "nflog"


def _saved_buffers() -> list[bytes]:
    return [
        bytes.fromhex(line)
        for path in sorted(DATA.glob("*.hex"))
        for line in path.read_text().splitlines()
        if line and not line.startswith("#")
    ]


BUFFERS = _saved_buffers()
MESSAGES = [
    buffer[offset : offset + length]
    for buffer in BUFFERS
    for offset, length, kind, _ in iter_messages(buffer)
    if kind == NFULNL_PACKET_TYPE
]

# The IP packets alone, as pyroute2 reads them out of the messages.
PAYLOADS: list[bytes] = [
    msg.get_attr("NFULA_PAYLOAD") for m in MESSAGES for msg in MarshalNflog().parse(m)
]


def decode_checked(decoder: NflogDecoder, buffer: bytes) -> list[KnockPacket]:
    before = decoder.counters.decoded
    packets = decoder.decode(buffer, 123.0)
    assert decoder.counters.balanced(), decoder.counters
    assert decoder.counters.decoded - before == len(packets)
    assert all(type(p) is KnockPacket and p.protocol in ("tcp", "udp") for p in packets)
    return packets


@st.composite
def mutated(draw: st.DrawFn, corpus: list[bytes]) -> bytes:
    """A saved buffer or message with bytes flipped, cut short, or joined to another."""
    data = bytearray(draw(st.sampled_from(corpus)))
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        index = draw(st.integers(0, len(data) - 1))
        data[index] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        data += draw(st.sampled_from(corpus))
    return bytes(data)


@given(st.binary(max_size=2048))
def test_random_bytes_never_raise(buffer: bytes) -> None:
    decode_checked(NflogDecoder(), buffer)


@given(st.lists(mutated(BUFFERS), min_size=1, max_size=4))
def test_mutated_buffers_never_raise_and_counters_add_up(buffers: list[bytes]) -> None:
    decoder = NflogDecoder(next_seq=0)
    for buffer in buffers:
        decode_checked(decoder, buffer)


@given(mutated(MESSAGES))
def test_learned_shapes_and_the_full_walk_agree_on_mutated_messages(message: bytes) -> None:
    # A fresh decoder walks its first message attribute by attribute; a warm
    # one has learned the saved shapes and reads matching messages in one go.
    warm = NflogDecoder()
    for saved in MESSAGES:
        warm.decode(saved, 0.0)
    warm.counters, warm.next_seq = NflogCounters(), None
    fresh = NflogDecoder()
    assert decode_checked(warm, message) == decode_checked(fresh, message)
    assert dataclasses.asdict(warm.counters) == dataclasses.asdict(fresh.counters)


@given(st.binary(max_size=200), st.integers(-4, 210), st.one_of(st.none(), st.integers(-4, 210)))
def test_decode_packet_never_raises(data: bytes, start: int, end: int | None) -> None:
    result = decode_packet(data, 0.0, 0, start, end)
    assert isinstance(result, KnockPacket | Discard)


@given(mutated(PAYLOADS))
def test_decode_packet_on_mutated_payloads(data: bytes) -> None:
    result = decode_packet(data, 0.0)
    if isinstance(result, KnockPacket):
        assert 0 <= result.dport <= 0xFFFF
        assert 0 <= result.tcp_flags <= 0xFF
