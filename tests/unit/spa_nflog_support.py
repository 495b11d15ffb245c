"""Kernel messages for the SPA reader's tests: nfnetlink_log packet messages holding whole IPv4
and IPv6 UDP datagrams to the SPA port, built by hand (hostile ones too)."""

from __future__ import annotations

import struct
from ipaddress import IPv6Address

from knocklab.packets import spoofed_packet
from knocknft.netlink.nflog_messages import NFULA_PAYLOAD, NFULA_SEQ, NFULNL_PACKET_TYPE

CLIENT4, SERVER4 = "198.18.0.2", "198.18.0.1"
CLIENT6, SERVER6 = "2001:db8::2", "2001:db8::1"


def nla(kind: int, data: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(data), kind) + data
    return raw + bytes(-len(raw) % 4)


def message(payload: bytes | None, seq: int | None = None) -> bytes:
    attrs = nla(NFULA_SEQ, struct.pack("!I", seq)) if seq is not None else b""
    attrs += nla(NFULA_PAYLOAD, payload) if payload is not None else b""
    body = struct.pack("!BBH", 2, 0, 8) + attrs
    return struct.pack("=IHHII", 16 + len(body), NFULNL_PACKET_TYPE, 0, 0, 0) + body


def udp4(payload: bytes, source: str = CLIENT4) -> bytes:
    """An IPv4 UDP datagram to the SPA port holding `payload`."""
    header = spoofed_packet(source, SERVER4, 62201, "udp")
    ip, udp = bytearray(header[:20]), bytearray(header[20:])
    struct.pack_into("!H", ip, 2, 28 + len(payload))
    struct.pack_into("!H", udp, 4, 8 + len(payload))
    return bytes(ip + udp) + payload


def udp6(payload: bytes, extensions: bytes = b"", first: int = 17) -> bytes:
    """An IPv6 UDP datagram, after `extensions` (whose first header is `first`)."""
    udp = struct.pack("!HHHH", 40000, 62201, 8 + len(payload), 0) + payload
    body = extensions + udp
    fixed = struct.pack("!IHBB", 6 << 28, len(body), first, 64)
    return fixed + IPv6Address(CLIENT6).packed + IPv6Address(SERVER6).packed + body
