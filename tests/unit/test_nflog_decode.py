"""The NFLOG buffer decoder on saved kernel messages, checked against pyroute2's reading."""

from __future__ import annotations

import errno
import itertools
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest

from knocknft.netlink.base import (
    NLA_F_NET_BYTEORDER,
    NLM_F_ACK,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSG_NOOP,
    iter_messages,
)
from knocknft.netlink.nflog_decoder import MessageProblem, NflogCounters, NflogDecoder
from knocknft.netlink.nflog_messages import (
    NFULA_CFG_CMD,
    NFULA_CFG_FLAGS,
    NFULA_CFG_MODE,
    NFULA_CFG_QTHRESH,
    NFULA_CFG_TIMEOUT,
    NFULA_IFINDEX_INDEV,
    NFULA_MARK,
    NFULA_PACKET_HDR,
    NFULA_PAYLOAD,
    NFULA_SEQ,
    NFULA_TIMESTAMP,
    NFULNL_CFG_CMD_BIND,
    NFULNL_CFG_F_SEQ,
    NFULNL_CONFIG_TYPE,
    NFULNL_COPY_PACKET,
    NFULNL_PACKET_TYPE,
    MarshalNflog,
    config_request,
)
from knocknft.netlink.packet import Discard, KnockPacket

DATA = Path(__file__).resolve().parents[1] / "data" / "nflog"
CASES = sorted(path.stem for path in DATA.glob("*.hex"))

CLIENT4, SERVER4 = IPv4Address("198.18.0.2"), IPv4Address("198.18.0.1")
CLIENT6, SERVER6 = IPv6Address("2001:db8::2"), IPv6Address("2001:db8::1")


def load(case: str) -> list[bytes]:
    """The recv() buffers of a saved capture, in order."""
    lines = (DATA / f"{case}.hex").read_text().splitlines()
    return [bytes.fromhex(line) for line in lines if line and not line.startswith("#")]


def packet_messages(case: str) -> list[bytes]:
    """Each NFULNL_MSG_PACKET message of a capture on its own."""
    return [
        buffer[offset : offset + length]
        for buffer in load(case)
        for offset, length, kind, _ in iter_messages(buffer)
        if kind == NFULNL_PACKET_TYPE
    ]


def decode_all(
    case: str, decoder: NflogDecoder | None = None
) -> tuple[list[KnockPacket], NflogDecoder]:
    decoder = decoder or NflogDecoder()
    packets = [p for buffer in load(case) for p in decoder.decode(buffer, 0.0)]
    return packets, decoder


# --- the reference: pyroute2's generic parser plus a plain reading of the packet ---


@dataclass(frozen=True)
class Reference:
    source: IPv4Address | IPv6Address
    dport: int | None
    ifindex: int
    timestamp: float
    seq: int


def reference(message: bytes) -> Reference:
    [msg] = [m for m in MarshalNflog().parse(message)]
    assert msg["header"]["type"] == NFULNL_PACKET_TYPE
    stamp = msg.get_attr("NFULA_TIMESTAMP")
    payload: bytes = msg.get_attr("NFULA_PAYLOAD")
    # Deliberately naive: fixed offsets, extension headers only of the 8-byte-unit kinds.
    if payload[0] >> 4 == 4:
        source: IPv4Address | IPv6Address = IPv4Address(payload[12:16])
        transport, protocol = (payload[0] & 0x0F) * 4, payload[9]
    else:
        source = IPv6Address(payload[8:24])
        transport, protocol = 40, payload[6]
        while protocol in (0, 44, 60):  # a fragment header is 8 bytes too
            protocol, transport = payload[transport], transport + (payload[transport + 1] + 1) * 8
    dport = int.from_bytes(payload[transport + 2 : transport + 4], "big")
    return Reference(
        source=source,
        dport=dport if protocol in (6, 17) and len(payload) >= transport + 8 else None,
        ifindex=msg.get_attr("NFULA_IFINDEX_INDEV"),
        timestamp=stamp["sec"] + stamp["usec"] / 1e6,
        seq=msg.get_attr("NFULA_SEQ"),
    )


@pytest.mark.parametrize("case", CASES)
def test_lean_decoder_agrees_with_pyroute2(case: str) -> None:
    decoder = NflogDecoder()
    for message in packet_messages(case):
        ref = reference(message)
        packets = decoder.decode(message, now=0.0)
        assert decoder.next_seq == ref.seq + 1
        if not packets:
            continue
        [knock] = packets
        assert (knock.source, knock.dport) == (ref.source, ref.dport)
        assert knock.ifindex == ref.ifindex > 0
        assert knock.timestamp == pytest.approx(ref.timestamp, abs=1e-6)


# --- each saved case ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("ipv4_tcp_syn", [(CLIENT4, SERVER4, "tcp", 7001, 0x02)]),
        ("ipv4_udp", [(CLIENT4, SERVER4, "udp", 7002, 0)]),
        ("ipv6_tcp", [(CLIENT6, SERVER6, "tcp", 7003, 0x02)]),
        ("ipv6_udp", [(CLIENT6, SERVER6, "udp", 7004, 0)]),
        ("ipv6_ext_headers", [(CLIENT6, SERVER6, "udp", 7005, 0)]),
        ("ipv4_ip_options", [(CLIENT4, SERVER4, "tcp", 7006, 0x02)]),
        ("copy_range", [(CLIENT4, SERVER4, "udp", 7200, 0)]),
        ("ipv6_fragment", [(CLIENT6, SERVER6, "udp", 7008, 0)]),
        (
            "batch",
            [
                (CLIENT4, SERVER4, "udp", 8001, 0),
                (CLIENT6, SERVER6, "udp", 8002, 0),
                (CLIENT4, SERVER4, "tcp", 8003, 0x02),
                (CLIENT6, SERVER6, "tcp", 8004, 0x02),
                (CLIENT4, SERVER4, "udp", 8005, 0),
            ],
        ),
        ("ipv4_icmp", []),
        ("ipv4_fragment", []),
        ("truncated", []),
    ],
)
def test_saved_case_decodes_to(case: str, expected: list[tuple[object, ...]]) -> None:
    packets, decoder = decode_all(case)
    assert [
        (p.source, p.destination, p.protocol, p.dport, p.tcp_flags) for p in packets
    ] == expected
    assert all(p.timestamp > 1.5e9 for p in packets)  # wall clock, not time since boot
    assert decoder.counters.balanced()
    assert decoder.counters.lost == 0


def test_saved_non_knocks_are_counted_by_reason() -> None:
    assert decode_all("ipv4_icmp")[1].counters.non_knock == {"not-tcp-or-udp": 1}
    assert decode_all("ipv4_fragment")[1].counters.non_knock == {"fragment": 1}
    assert decode_all("ipv6_fragment")[1].counters.non_knock == {"fragment": 2}
    truncated = decode_all("truncated")[1].counters
    assert truncated.malformed == {Discard.TRUNCATED: 1}
    assert truncated.non_knock == {}


def test_saved_batch_is_one_buffer_ended_by_nlmsg_done() -> None:
    [buffer] = load("batch")
    kinds = [kind for _, _, kind, _ in iter_messages(buffer)]
    assert kinds == [NFULNL_PACKET_TYPE] * 5 + [NLMSG_DONE]
    decoder = NflogDecoder()
    assert len(decoder.decode(buffer, 0.0)) == 5
    assert decoder.counters == NflogCounters(messages=5, decoded=5, control=1)


def test_saved_seq_gap_counts_the_packets_the_kernel_dropped() -> None:
    seqs = [reference(m).seq for m in packet_messages("seq_gap")]
    missing = sum(b - a - 1 for a, b in itertools.pairwise(seqs))
    assert missing > 0
    packets, decoder = decode_all("seq_gap")
    assert len(packets) == len(seqs)
    assert decoder.counters.lost == missing
    assert decoder.next_seq == seqs[-1] + 1


def test_seq_gap_before_the_first_message_counts_from_a_fresh_bind() -> None:
    first = packet_messages("seq_gap")[0]
    decoder = NflogDecoder(next_seq=0)
    decoder.decode(message(seq=3, payload=payload_of(first)), 0.0)
    assert decoder.counters.lost == 3


@pytest.mark.parametrize("case", CASES)
def test_fast_path_and_full_walk_agree(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    walked, _ = decode_all(case)
    warm = NflogDecoder()
    decode_all(case, warm)  # learns the shapes

    def no_walk(self: NflogDecoder, *args: Any) -> Any:
        raise AssertionError("a learned shape was walked again")

    monkeypatch.setattr(NflogDecoder, "_walk", no_walk)
    again, _ = decode_all(case, warm)
    assert again == walked


def test_an_unfamiliar_shape_falls_back_to_the_full_walk() -> None:
    decoder = NflogDecoder()
    [syn] = packet_messages("ipv4_tcp_syn")
    [knock] = decoder.decode(syn, 0.0)
    # Same packet, but with a mark attribute before the payload and another ifindex.
    marked = message(
        seq=77, ifindex=9, payload=payload_of(syn), extra=[(NFULA_MARK, b"\0\0\0\x2a")]
    )
    [again] = decoder.decode(marked, 0.0)
    assert again.ifindex == 9
    assert (again.source, again.dport) == (knock.source, knock.dport)


# --- crafted messages ------------------------------------------------------------------


def nla(kind: int, data: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(data), kind) + data
    return raw + bytes(-len(raw) % 4)


def nlmsg(kind: int, body: bytes, seq: int = 0, flags: int = 0) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body


def message(
    *,
    payload: bytes | None,
    seq: int | None = None,
    ifindex: int | None = 2,
    timestamp: tuple[int, int] | None = (1_700_000_000, 250_000),
    extra: list[tuple[int, bytes]] | None = None,
    seq_flags: int = 0,
) -> bytes:
    """An NFULNL_MSG_PACKET message laid out as the kernel does."""
    attrs = nla(NFULA_PACKET_HDR, struct.pack("!HBB", 0x0800, 1, 0))
    if ifindex is not None:
        attrs += nla(NFULA_IFINDEX_INDEV, struct.pack("!I", ifindex))
    for kind, data in extra or []:
        attrs += nla(kind, data)
    if timestamp is not None:
        attrs += nla(NFULA_TIMESTAMP, struct.pack("!QQ", *timestamp))
    if seq is not None:
        attrs += nla(NFULA_SEQ | seq_flags, struct.pack("!I", seq))
    if payload is not None:
        attrs += nla(NFULA_PAYLOAD, payload)
    return nlmsg(NFULNL_PACKET_TYPE, struct.pack("!BBH", 2, 0, 7) + attrs)


def payload_of(saved: bytes) -> bytes:
    [msg] = list(MarshalNflog().parse(saved))
    data: bytes = msg.get_attr("NFULA_PAYLOAD")
    return data


SYN_PAYLOAD = payload_of(packet_messages("ipv4_tcp_syn")[0])


def test_crafted_message_decodes_like_a_saved_one() -> None:
    [knock] = NflogDecoder().decode(message(payload=SYN_PAYLOAD, seq=1), 0.0)
    assert knock == KnockPacket(
        CLIENT4, SERVER4, "tcp", 7001, 0x02, 2, 1_700_000_000.25, sport=59000, seq=736941233
    )


def test_missing_or_zero_timestamp_uses_now() -> None:
    for timestamp in (None, (0, 999)):
        [knock] = NflogDecoder().decode(message(payload=SYN_PAYLOAD, timestamp=timestamp), 42.5)
        assert knock.timestamp == 42.5


def test_missing_ifindex_is_zero() -> None:
    [knock] = NflogDecoder().decode(message(payload=SYN_PAYLOAD, ifindex=None), 0.0)
    assert knock.ifindex == 0


def test_attribute_flag_bits_are_ignored() -> None:
    decoder = NflogDecoder(next_seq=0)
    decoder.decode(message(payload=SYN_PAYLOAD, seq=5, seq_flags=NLA_F_NET_BYTEORDER), 0.0)
    assert decoder.next_seq == 6
    assert decoder.counters.lost == 5


@pytest.mark.parametrize(
    ("seqs", "lost"),
    [
        ([0, 1, 2], 0),
        ([5, 9], 3),
        ([0xFFFFFFFE, 0xFFFFFFFF, 0, 1], 0),
        ([0xFFFFFFFF, 2], 2),
        ([100, 0, 1], 0),  # a restart (rebind) is not four billion losses
    ],
)
def test_sequence_gaps(seqs: list[int], lost: int) -> None:
    decoder = NflogDecoder()
    for seq in seqs:
        decoder.decode(message(payload=SYN_PAYLOAD, seq=seq), 0.0)
    assert decoder.counters.lost == lost


def test_control_and_error_messages_are_counted_not_decoded() -> None:
    ack = nlmsg(NLMSG_ERROR, struct.pack("=i", 0) + bytes(16))
    error = nlmsg(NLMSG_ERROR, struct.pack("=i", -errno.EPERM) + bytes(16))
    done = nlmsg(NLMSG_DONE, bytes(4))
    noop = nlmsg(NLMSG_NOOP, b"")
    config = nlmsg(NFULNL_CONFIG_TYPE, bytes(4))
    buffer = ack + error + done + noop + config + message(payload=SYN_PAYLOAD)
    decoder = NflogDecoder()
    assert len(decoder.decode(buffer, 0.0)) == 1
    assert decoder.counters == NflogCounters(messages=1, decoded=1, control=4, netlink_errors=1)


def test_a_buffer_cut_mid_message_keeps_what_came_before() -> None:
    whole = message(payload=SYN_PAYLOAD, seq=0) + message(payload=SYN_PAYLOAD, seq=1)
    decoder = NflogDecoder()
    assert len(decoder.decode(whole[: len(whole) - 10], 0.0)) == 1
    assert decoder.counters.malformed == {MessageProblem.TRUNCATED: 1}
    assert decoder.counters.balanced()


@pytest.mark.parametrize("tail", [b"\x01", bytes(15), struct.pack("=IHHII", 8, 0, 0, 0, 0)])
def test_garbage_after_the_last_message_is_one_malformed_message(tail: bytes) -> None:
    decoder = NflogDecoder()
    assert len(decoder.decode(message(payload=SYN_PAYLOAD) + tail, 0.0)) == 1
    assert decoder.counters.malformed == {MessageProblem.TRUNCATED: 1}


def test_message_without_payload() -> None:
    decoder = NflogDecoder()
    assert decoder.decode(message(payload=None), 0.0) == []
    assert decoder.counters.malformed == {MessageProblem.NO_PAYLOAD: 1}


def test_attribute_running_past_its_message() -> None:
    bad = bytearray(message(payload=SYN_PAYLOAD))
    struct.pack_into("=H", bad, 20, 0xFFF0)  # the first attribute's length
    decoder = NflogDecoder()
    assert decoder.decode(bytes(bad), 0.0) == []
    assert decoder.counters.malformed == {MessageProblem.BAD_ATTRIBUTE: 1}


def test_packet_message_too_short_for_its_nfgenmsg() -> None:
    decoder = NflogDecoder()
    assert decoder.decode(nlmsg(NFULNL_PACKET_TYPE, b"\x02\x00"), 0.0) == []
    assert decoder.counters.malformed == {MessageProblem.BAD_ATTRIBUTE: 1}


# --- config requests -----------------------------------------------------------------


def test_bind_request_bytes() -> None:
    request = config_request(7, 42, [("NFULA_CFG_CMD", {"command": NFULNL_CFG_CMD_BIND})])
    body = struct.pack("!BBH", 0, 0, 7) + nla(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_BIND]))
    assert request == nlmsg(NFULNL_CONFIG_TYPE, body, seq=42, flags=NLM_F_REQUEST | NLM_F_ACK)


def test_mode_request_bytes() -> None:
    request = config_request(
        65535,
        1,
        [
            ("NFULA_CFG_MODE", {"copy_range": 128, "copy_mode": NFULNL_COPY_PACKET}),
            ("NFULA_CFG_QTHRESH", 1),
            ("NFULA_CFG_TIMEOUT", 1),
            ("NFULA_CFG_FLAGS", NFULNL_CFG_F_SEQ),
        ],
    )
    body = (
        struct.pack("!BBH", 0, 0, 65535)
        + nla(NFULA_CFG_MODE, struct.pack("!IBB", 128, NFULNL_COPY_PACKET, 0))
        + nla(NFULA_CFG_QTHRESH, struct.pack("!I", 1))
        + nla(NFULA_CFG_TIMEOUT, struct.pack("!I", 1))
        + nla(NFULA_CFG_FLAGS, struct.pack("!H", NFULNL_CFG_F_SEQ))
    )
    assert request == nlmsg(NFULNL_CONFIG_TYPE, body, seq=1, flags=NLM_F_REQUEST | NLM_F_ACK)
    [parsed] = list(MarshalNflog().parse(request))
    assert parsed.get_attr("NFULA_CFG_MODE")["copy_range"] == 128
    assert parsed["res_id"] == 65535


def test_reference_reader_understands_every_saved_attribute() -> None:
    names = {
        name
        for case in CASES
        for buffer in load(case)
        for msg in MarshalNflog().parse(buffer)
        if msg["header"]["type"] == NFULNL_PACKET_TYPE
        for name, _ in msg["attrs"]
    }
    assert "UNKNOWN" not in names
    assert {"NFULA_PAYLOAD", "NFULA_SEQ", "NFULA_TIMESTAMP", "NFULA_IFINDEX_INDEV"} <= names
