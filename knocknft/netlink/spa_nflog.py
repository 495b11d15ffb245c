"""SPA packets from NFLOG: each logged packet's source address and UDP payload, whatever arrives.

The SPA rule (knocknft.core.spa_rules) logs every packet to the SPA port whole, to a group of its
own, so this decoder never meets a knock: the knock hot path (knocknft.netlink.nflog_decoder,
knocknft.netlink.packet) stays as it is. A packet here is rare next to knocks, but a flood of junk
to the SPA port is not, so the work per packet is a few `struct` reads and one copy of the
payload, and nothing in it raises: bytes that are not one whole UDP datagram are a counted drop
(`NflogCounters`, the same counters the knock reader keeps), never an exception.

Not whole means: cut short (the copy, or the UDP length, ends before the datagram does), or a
fragment. The kernel reassembles before the input hook when connection tracking runs (our
table's rules use it), so a fragment here is one it could not reassemble: its payload is a
piece, never a request.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Final

from knocknft.core.spa_rules import SPA_SNAPLEN
from knocknft.netlink.base import (
    NFGENMSG_LEN,
    NLMSG_ERROR,
    NLMSG_HDRLEN,
    NLMSGERR,
    Buffer,
    iter_attrs,
)
from knocknft.netlink.nflog_decoder import MessageProblem, NflogCounters
from knocknft.netlink.nflog_messages import NFULA_PAYLOAD, NFULA_SEQ, NFULNL_PACKET_TYPE
from knocknft.netlink.packet import Discard

__all__ = ["SPA_COPY_RANGE", "SpaDatagram", "SpaNflogDecoder", "decode_datagram"]

# What the SPA socket asks the kernel to copy of each packet: as much as the rule's snaplen.
SPA_COPY_RANGE: Final = SPA_SNAPLEN

_IPV4: Final = struct.Struct("!B5xHxB8x")  # version/IHL, flags+fragment offset, protocol
_IPV6_NEXT: Final = struct.Struct("!6xB")
_IPV6_EXT: Final = struct.Struct("!BB")  # next header, length
_UDP_LENGTH: Final = struct.Struct("!4xH")
_BE32: Final = struct.Struct("!I")
_NLMSG: Final = struct.Struct("=IH")  # the netlink header's length and type

_IPV4_HEADER: Final = 20
_IPV6_HEADER: Final = 40
_UDP_HEADER: Final = 8
_PROTO_UDP: Final = 17
_PROTO_FRAGMENT: Final = 44
# Hop-by-hop, routing, destination options: walked over. A fragment header ends the walk (a
# piece of a packet), and so does anything else that is not UDP.
_IPV6_SKIPPED: Final = frozenset({0, 43, 60})
_MAX_IPV6_EXTENSIONS: Final = 8  # a longer chain is crafted; the bound bounds its cost
_IPV4_MORE_OR_OFFSET: Final = 0x3FFF  # MF flag and fragment offset
_SEQ_MODULO: Final = 1 << 32
_SEQ_HALF: Final = 1 << 31


@dataclass(frozen=True, slots=True)
class SpaDatagram:
    """One UDP datagram to the SPA port: who sent it (the packet's source) and what it holds."""

    source: IPv4Address | IPv6Address
    payload: bytes


# (source, transport protocol, where its header starts), from an IP header.
_Network = tuple[IPv4Address | IPv6Address, int, int]


def decode_datagram(data: bytes) -> SpaDatagram | Discard:
    """The datagram in the IP packet `data` (as NFLOG copies it), or why there is none."""
    version = data[0] >> 4 if data else 0
    if version == 4:
        network = _ipv4(data)
    elif version == 6:
        network = _ipv6(data)
    else:
        return Discard.TRUNCATED if not data else Discard.BAD_IP_VERSION
    if isinstance(network, Discard):
        return network
    source, protocol, transport = network
    if protocol != _PROTO_UDP:
        return Discard.NOT_TCP_OR_UDP
    # A copy too short for the UDP header reads as length 0: refused as too short.
    (length,) = (
        _UDP_LENGTH.unpack_from(data, transport) if len(data) - transport >= _UDP_HEADER else (0,)
    )
    if length < _UDP_HEADER:
        # 0 is also a jumbogram's UDP length (RFC 2675): no SPA packet is one.
        return Discard.TRUNCATED
    if length > len(data) - transport:
        return Discard.TRUNCATED  # longer than the copy: a packet no SPA client sends
    return SpaDatagram(source, data[transport + _UDP_HEADER : transport + length])


def _ipv4(data: bytes) -> _Network | Discard:
    if len(data) < _IPV4_HEADER:
        return Discard.TRUNCATED
    version_ihl, fragment, protocol = _IPV4.unpack_from(data)
    transport = (version_ihl & 0x0F) << 2
    if transport < _IPV4_HEADER:
        return Discard.BAD_HEADER_LENGTH
    if fragment & _IPV4_MORE_OR_OFFSET:
        return Discard.FRAGMENT
    return IPv4Address(data[12:16]), protocol, transport


def _ipv6(data: bytes) -> _Network | Discard:
    if len(data) < _IPV6_HEADER:
        return Discard.TRUNCATED
    (protocol,) = _IPV6_NEXT.unpack_from(data)
    transport = _IPV6_HEADER
    hops = 0
    while protocol in _IPV6_SKIPPED:
        hops += 1
        if hops > _MAX_IPV6_EXTENSIONS:
            return Discard.HEADER_CHAIN_TOO_LONG
        if len(data) - transport < _UDP_HEADER:  # every extension header is 8n bytes long
            return Discard.TRUNCATED
        protocol, length = _IPV6_EXT.unpack_from(data, transport)
        transport += (length + 1) << 3
    if protocol == _PROTO_FRAGMENT:
        return Discard.FRAGMENT
    return IPv6Address(data[8:24]), protocol, transport


class SpaNflogDecoder:
    """``recv()`` buffers of nfnetlink_log messages in, SPA datagrams out, every outcome counted
    as the knock decoder counts (`decoded`, `non_knock`: not a UDP datagram, `malformed`).

    ``next_seq`` is 0 for a group freshly bound by this socket (the kernel numbers from 0 per
    bind); a gap in NFULA_SEQ counts the packets the kernel could not queue (`lost`).
    """

    __slots__ = ("counters", "next_seq")

    def __init__(self, next_seq: int | None = None) -> None:
        self.counters = NflogCounters()
        self.next_seq = next_seq

    def decode(self, buffer: Buffer, now: float) -> list[SpaDatagram]:
        """Every datagram in `buffer`; `now` is unused (a request's time is the verifier's)."""
        data = bytes(buffer)
        counters = self.counters
        datagrams: list[SpaDatagram] = []
        offset = 0
        size = len(data)
        while offset < size:
            whole = size - offset >= NLMSG_HDRLEN
            length, kind = _NLMSG.unpack_from(data, offset) if whole else (0, 0)
            if length < NLMSG_HDRLEN or length > size - offset:
                # Without a trustworthy length there is no next message to find.
                counters.messages += 1
                _count(counters.malformed, MessageProblem.TRUNCATED)
                break
            if kind == NFULNL_PACKET_TYPE:
                counters.messages += 1
                found = self._packet(data, offset, length)
                if isinstance(found, SpaDatagram):
                    counters.decoded += 1
                    datagrams.append(found)
                elif isinstance(found, Discard) and not found.malformed:
                    _count(counters.non_knock, found)
                else:
                    _count(counters.malformed, found)
            elif kind == NLMSG_ERROR and length >= NLMSG_HDRLEN + NLMSGERR.size:
                if NLMSGERR.unpack_from(data, offset + NLMSG_HDRLEN)[0]:
                    counters.netlink_errors += 1
                else:
                    counters.control += 1
            else:
                counters.control += 1
            offset += (length + 3) & ~3
        return datagrams

    def _packet(self, data: bytes, offset: int, length: int) -> SpaDatagram | Discard | str:
        payload: bytes | None = None
        start = offset + NLMSG_HDRLEN + NFGENMSG_LEN  # the attributes follow nfgenmsg
        for kind, value in iter_attrs(data, start, offset + length):
            if kind == NFULA_PAYLOAD:
                payload = value
            elif kind == NFULA_SEQ and len(value) >= _BE32.size:
                self._sequence(_BE32.unpack_from(value)[0])
        if payload is None:
            return MessageProblem.NO_PAYLOAD
        return decode_datagram(payload)

    def _sequence(self, seq: int) -> None:
        expected = self.next_seq
        if expected is not None and seq != expected:
            gap = (seq - expected) % _SEQ_MODULO
            # A "gap" of more than half the space is the counter restarting (a rebind).
            if gap < _SEQ_HALF:
                self.counters.lost += gap
        self.next_seq = (seq + 1) % _SEQ_MODULO


def _count(where: dict[str, int], reason: str) -> None:
    where[reason] = where.get(reason, 0) + 1
