"""Knock packets: the few facts a knock needs, decoded from a raw IP packet.

A *knock* is one TCP or UDP packet as NFLOG copies it to user space, starting at
the IP header: who sent it (``source``), to which address and ports, with which
TCP flags and sequence number, on which interface and when. The source port and
sequence number name a TCP connection: a SYN the client's kernel retransmits
repeats both. :func:`decode_packet` turns those bytes into a :class:`KnockPacket`,
or into a :class:`Discard` that says why the bytes are not a knock. It never
raises on bad input and does no I/O: the interface index and the timestamp come
in with the bytes.

The decoder runs once per logged packet, so it is written for CPython's speed:
a few precompiled ``struct.Struct`` reads, no slicing of the input, and address
objects taken from small caches instead of being built every time.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import KW_ONLY, dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Final

from knocknft.netlink.base import Buffer

__all__ = [
    "Discard",
    "KnockPacket",
    "decode_packet",
]


@dataclass(frozen=True, slots=True)
class KnockPacket:
    """One TCP or UDP packet that reached a knock rule."""

    source: IPv4Address | IPv6Address
    destination: IPv4Address | IPv6Address
    protocol: str
    """``"tcp"`` or ``"udp"``."""
    dport: int
    tcp_flags: int
    """The raw TCP flag byte (CWR and ECE included); 0 for UDP."""
    ifindex: int
    """Input interface index; 0 when unknown."""
    timestamp: float
    """Seconds since the epoch."""
    # Keyword-only and required: positional constructions written before these fields existed
    # fail loudly instead of giving every packet the same connection.
    _: KW_ONLY
    sport: int
    """Source port."""
    seq: int
    """TCP sequence number; 0 for UDP. With ``sport`` it tells a retransmitted SYN (both the
    same) from a new connection to the same port (a new source port and initial number)."""


class Discard(enum.StrEnum):
    """Why a packet is not a knock.

    The values are short, stable words fit for counters and logs. A reason is
    either *malformed* (the bytes contradict themselves or end too soon) or a
    well-formed packet that simply cannot be a knock.
    """

    TRUNCATED = "truncated"
    BAD_IP_VERSION = "bad-ip-version"
    BAD_HEADER_LENGTH = "bad-header-length"
    HEADER_CHAIN_TOO_LONG = "header-chain-too-long"
    FRAGMENT = "fragment"
    NOT_TCP_OR_UDP = "not-tcp-or-udp"
    ENCRYPTED = "encrypted"
    NO_NEXT_HEADER = "no-next-header"

    @property
    def malformed(self) -> bool:
        return self in _MALFORMED


_MALFORMED: Final = frozenset(
    {
        Discard.TRUNCATED,
        Discard.BAD_IP_VERSION,
        Discard.BAD_HEADER_LENGTH,
        Discard.HEADER_CHAIN_TOO_LONG,
    }
)

# IPv4: version/IHL, flags+fragment offset, protocol, source, destination.
_IPV4: Final = struct.Struct("!B5xHxB2xII")
# IPv6: next header, source, destination (version is read from the first byte).
_IPV6: Final = struct.Struct("!6xB1x16s16s")
# Generic IPv6 extension header start: next header, length field.
_IPV6_EXT: Final = struct.Struct("!BB")
# IPv6 fragment header: next header, fragment offset (upper 13 bits) and flags.
_IPV6_FRAG: Final = struct.Struct("!BxH")
# TCP: source and destination port, sequence number, then (past the acknowledgment number) data
# offset (upper 4 bits), reserved and flags.
_TCP: Final = struct.Struct("!HHI4xH")
_UDP: Final = struct.Struct("!HH")

_TCP_HEADER: Final = 20
_UDP_HEADER: Final = 8
_IPV4_HEADER: Final = 20
_IPV6_HEADER: Final = 40
# Every IPv6 extension header is a multiple of 8 bytes long.
_IPV6_EXT_MIN: Final = 8

_PROTO_TCP: Final = 6
_PROTO_UDP: Final = 17
_PROTO_HOP_BY_HOP: Final = 0
_PROTO_ROUTING: Final = 43
_PROTO_FRAGMENT: Final = 44
_PROTO_ESP: Final = 50
_PROTO_AH: Final = 51
_PROTO_NO_NEXT: Final = 59
_PROTO_DEST_OPTS: Final = 60
_IPV6_EXTENSIONS: Final = frozenset(
    {_PROTO_HOP_BY_HOP, _PROTO_ROUTING, _PROTO_FRAGMENT, _PROTO_AH, _PROTO_DEST_OPTS}
)
# A legitimate packet carries a handful of extension headers at most; a longer
# chain is crafted, and bounding it bounds the time one packet can cost.
_MAX_IPV6_EXTENSIONS: Final = 8

# Address objects are cached by their raw value: knocks, scans and most floods
# repeat few sources and fewer destinations, and a dict hit costs a sixth of
# building an IPv4Address (a seventh of an IPv6Address). The caches are emptied
# when full, which bounds memory under a spoofed-source flood; each miss then
# costs one address build, as it would without a cache.
_CACHE_LIMIT: Final = 4096
_v4_cache: dict[int, IPv4Address] = {}
_v6_cache: dict[bytes, IPv6Address] = {}


def _ipv4(raw: int) -> IPv4Address:
    address = _v4_cache.get(raw)
    if address is None:
        if len(_v4_cache) >= _CACHE_LIMIT:
            _v4_cache.clear()
        address = _v4_cache[raw] = IPv4Address(raw)
    return address


def _ipv6(raw: bytes) -> IPv6Address:
    address = _v6_cache.get(raw)
    if address is None:
        if len(_v6_cache) >= _CACHE_LIMIT:
            _v6_cache.clear()
        address = _v6_cache[raw] = IPv6Address(raw)
    return address


# A frozen dataclass's __init__ assigns each field through object.__setattr__:
# about 0.65 us for nine fields, and writing the slots through their descriptors
# instead still takes 0.35 us. So decode_packet fills a packet in as a _Filling,
# a class with the very same slots and no __setattr__ of its own, whose attribute
# writes CPython does inline, and then makes it a KnockPacket by __class__
# assignment, which CPython allows between classes of one layout: 0.15 us in all.
# What comes out is an ordinary frozen KnockPacket (same eq, hash and repr).
class _Filling:
    __slots__ = KnockPacket.__slots__


_new_packet = object.__new__


def decode_packet(  # noqa: C901, PLR0911, PLR0912, PLR0915 - the per-packet hot path, flat on purpose: a call per header field costs more
    data: Buffer,
    timestamp: float,
    ifindex: int = 0,
    start: int = 0,
    end: int | None = None,
) -> KnockPacket | Discard:
    """Decode the IP packet in ``data[start:end]`` into a knock, or say why not.

    ``start`` and ``end`` let a caller decode a packet inside a larger buffer
    (a netlink message) without copying it. A non-first fragment has no
    transport header and is a :attr:`Discard.FRAGMENT`; a first fragment is
    decoded like any packet.
    """
    if end is None:
        end = len(data)
    if start < 0 or end - start < 1 or end > len(data):
        return Discard.TRUNCATED
    version = data[start] >> 4
    source: IPv4Address | IPv6Address
    destination: IPv4Address | IPv6Address
    if version == 4:
        if end - start < _IPV4_HEADER:
            return Discard.TRUNCATED
        version_ihl, fragment, protocol, raw_source, raw_destination = _IPV4.unpack_from(
            data, start
        )
        header_length = (version_ihl & 0x0F) << 2
        if header_length < _IPV4_HEADER:
            return Discard.BAD_HEADER_LENGTH
        if fragment & 0x1FFF:
            return Discard.FRAGMENT
        transport = start + header_length
    elif version == 6:
        if end - start < _IPV6_HEADER:
            return Discard.TRUNCATED
        protocol, raw_source6, raw_destination6 = _IPV6.unpack_from(data, start)
        transport = start + _IPV6_HEADER
        if protocol in _IPV6_EXTENSIONS:
            hops = 0
            while protocol in _IPV6_EXTENSIONS:
                hops += 1
                if hops > _MAX_IPV6_EXTENSIONS:
                    return Discard.HEADER_CHAIN_TOO_LONG
                if end - transport < _IPV6_EXT_MIN:
                    return Discard.TRUNCATED
                if protocol == _PROTO_FRAGMENT:
                    protocol, fragment = _IPV6_FRAG.unpack_from(data, transport)
                    if fragment & 0xFFF8:
                        return Discard.FRAGMENT
                    transport += _IPV6_EXT_MIN
                elif protocol == _PROTO_AH:
                    # AH counts its length in 4-byte units minus 2 (RFC 4302).
                    protocol, length = _IPV6_EXT.unpack_from(data, transport)
                    transport += (length + 2) << 2
                else:
                    protocol, length = _IPV6_EXT.unpack_from(data, transport)
                    transport += (length + 1) << 3
    else:
        return Discard.BAD_IP_VERSION

    if protocol == _PROTO_TCP:
        if end - transport < _TCP_HEADER:
            return Discard.TRUNCATED
        sport, dport, seq, offset_flags = _TCP.unpack_from(data, transport)
        if offset_flags >> 12 < 5:
            return Discard.BAD_HEADER_LENGTH
        name = "tcp"
        flags = offset_flags & 0xFF
    elif protocol == _PROTO_UDP:
        if end - transport < _UDP_HEADER:
            return Discard.TRUNCATED
        sport, dport = _UDP.unpack_from(data, transport)
        name = "udp"
        flags = 0
        seq = 0
    elif protocol == _PROTO_ESP:
        return Discard.ENCRYPTED
    elif protocol == _PROTO_NO_NEXT:
        return Discard.NO_NEXT_HEADER
    else:
        return Discard.NOT_TCP_OR_UDP

    # Addresses last: only a knock pays for them.
    if version == 4:
        source = _v4_cache.get(raw_source) or _ipv4(raw_source)
        destination = _v4_cache.get(raw_destination) or _ipv4(raw_destination)
    else:
        source = _v6_cache.get(raw_source6) or _ipv6(raw_source6)
        destination = _v6_cache.get(raw_destination6) or _ipv6(raw_destination6)
    # Inline, not a helper: a call with nine arguments would cost a sixth of this.
    packet: Any = _new_packet(_Filling)
    packet.source = source
    packet.destination = destination
    packet.protocol = name
    packet.dport = dport
    packet.tcp_flags = flags
    packet.ifindex = ifindex
    packet.timestamp = timestamp
    packet.sport = sport
    packet.seq = seq
    packet.__class__ = KnockPacket
    knock: KnockPacket = packet
    return knock
