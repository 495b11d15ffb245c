"""The NFLOG adapter: knock packets from the kernel's nfnetlink_log.

An nftables rule ``log group N`` hands each matching packet to the kernel's
nfnetlink_log, which queues a copy on the one netlink socket bound to group N.
This module is that socket and its decoder; it is the only place that speaks
nfnetlink_log, so the kernel's names (``NFULA_PAYLOAD``, ``nfulnl_msg_packet``)
live here and nowhere else.

Three layers, from the kernel outwards:

* pyroute2 message classes (:class:`nfulnl_msg_config`,
  :class:`nfulnl_msg_packet`, :class:`MarshalNflog`) spelled as in
  ``include/uapi/linux/netfilter/nfnetlink_log.h``. They build the config
  requests and give a slow but thorough decode for tests to check against.
* :class:`NflogDecoder`, the hot path: it walks one ``recv()`` buffer with a few
  ``struct`` reads per message, picks the four attributes a knock needs, hands
  the payload to :func:`knocknft.netlink.packet.decode_packet`, and counts every
  outcome in :class:`NflogCounters`, including packets the kernel dropped
  (gaps in ``NFULA_SEQ``).
* :class:`NflogSocket`: binds the group, sets the copy mode, and turns
  ``recv()`` into lists of :class:`~knocknft.netlink.packet.KnockPacket`.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import operator
import os
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Final, NamedTuple, Self

from pyroute2.netlink import nla
from pyroute2.netlink.marshal import Marshal
from pyroute2.netlink.nfnetlink import nfgen_msg

from knocknft.errors import KnocknftError
from knocknft.netlink.packet import Buffer, KnockPacket, decode_packet

__all__ = [
    "MarshalNflog",
    "MessageProblem",
    "NflogCounters",
    "NflogDecoder",
    "NflogError",
    "NflogGroupBusy",
    "NflogSocket",
    "config_request",
    "iter_messages",
    "nfulnl_msg_config",
    "nfulnl_msg_packet",
]

# --- kernel constants (include/uapi/linux/netlink.h, netfilter/nfnetlink*.h) ---

NETLINK_NETFILTER: Final = 12
SOL_NETLINK: Final = 270
NETLINK_NO_ENOBUFS: Final = 5
SO_RCVBUFFORCE: Final = getattr(socket, "SO_RCVBUFFORCE", 33)
SO_SNDBUFFORCE: Final = getattr(socket, "SO_SNDBUFFORCE", 32)

NLM_F_REQUEST: Final = 0x1
NLM_F_ACK: Final = 0x4
NLMSG_NOOP: Final = 0x1
NLMSG_ERROR: Final = 0x2
NLMSG_DONE: Final = 0x3
NLMSG_OVERRUN: Final = 0x4
NLMSG_HDRLEN: Final = 16
NFGENMSG_LEN: Final = 4
NLA_HDRLEN: Final = 4
NLA_F_NESTED: Final = 1 << 15
NLA_F_NET_BYTEORDER: Final = 1 << 14
NLA_TYPE_MASK: Final = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xFFFF

NFNETLINK_V0: Final = 0
NFNL_SUBSYS_ULOG: Final = 4

NFULNL_MSG_PACKET: Final = 0
NFULNL_MSG_CONFIG: Final = 1

NFULA_UNSPEC: Final = 0
NFULA_PACKET_HDR: Final = 1
NFULA_MARK: Final = 2
NFULA_TIMESTAMP: Final = 3
NFULA_IFINDEX_INDEV: Final = 4
NFULA_IFINDEX_OUTDEV: Final = 5
NFULA_IFINDEX_PHYSINDEV: Final = 6
NFULA_IFINDEX_PHYSOUTDEV: Final = 7
NFULA_HWADDR: Final = 8
NFULA_PAYLOAD: Final = 9
NFULA_PREFIX: Final = 10
NFULA_UID: Final = 11
NFULA_SEQ: Final = 12
NFULA_SEQ_GLOBAL: Final = 13
NFULA_GID: Final = 14
NFULA_HWTYPE: Final = 15
NFULA_HWHEADER: Final = 16
NFULA_HWLEN: Final = 17
NFULA_CT: Final = 18
NFULA_CT_INFO: Final = 19
NFULA_VLAN: Final = 20
NFULA_L2HDR: Final = 21

NFULNL_CFG_CMD_NONE: Final = 0
NFULNL_CFG_CMD_BIND: Final = 1
NFULNL_CFG_CMD_UNBIND: Final = 2
NFULNL_CFG_CMD_PF_BIND: Final = 3
NFULNL_CFG_CMD_PF_UNBIND: Final = 4

NFULA_CFG_UNSPEC: Final = 0
NFULA_CFG_CMD: Final = 1
NFULA_CFG_MODE: Final = 2
NFULA_CFG_NLBUFSIZ: Final = 3
NFULA_CFG_TIMEOUT: Final = 4
NFULA_CFG_QTHRESH: Final = 5
NFULA_CFG_FLAGS: Final = 6

NFULNL_COPY_NONE: Final = 0x00
NFULNL_COPY_META: Final = 0x01
NFULNL_COPY_PACKET: Final = 0x02

NFULNL_CFG_F_SEQ: Final = 0x0001
NFULNL_CFG_F_SEQ_GLOBAL: Final = 0x0002
NFULNL_CFG_F_CONNTRACK: Final = 0x0004

# nlmsg_type of the two nfnetlink_log messages: subsystem in the high byte.
NFULNL_PACKET_TYPE: Final = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET
NFULNL_CONFIG_TYPE: Final = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG


# --- pyroute2 message classes, for config requests and reference decoding ---
# pyroute2 ships no type hints, so its base classes are Any to mypy.


class nfulnl_msg_packet(nfgen_msg):  # type: ignore[misc]  # noqa: N801 - kernel name; pyroute2 is untyped
    """A logged packet (NFULNL_MSG_PACKET), as the kernel builds it."""

    prefix = "NFULA_"
    nla_map = (
        ("NFULA_UNSPEC", "none"),
        ("NFULA_PACKET_HDR", "nfulnl_msg_packet_hdr"),
        ("NFULA_MARK", "be32"),
        ("NFULA_TIMESTAMP", "nfulnl_msg_packet_timestamp"),
        ("NFULA_IFINDEX_INDEV", "be32"),
        ("NFULA_IFINDEX_OUTDEV", "be32"),
        ("NFULA_IFINDEX_PHYSINDEV", "be32"),
        ("NFULA_IFINDEX_PHYSOUTDEV", "be32"),
        ("NFULA_HWADDR", "nfulnl_msg_packet_hw"),
        ("NFULA_PAYLOAD", "cdata"),
        ("NFULA_PREFIX", "asciiz"),
        ("NFULA_UID", "be32"),
        ("NFULA_SEQ", "be32"),
        ("NFULA_SEQ_GLOBAL", "be32"),
        ("NFULA_GID", "be32"),
        ("NFULA_HWTYPE", "be16"),
        ("NFULA_HWHEADER", "cdata"),
        ("NFULA_HWLEN", "be16"),
        ("NFULA_CT", "cdata"),
        ("NFULA_CT_INFO", "be32"),
        ("NFULA_VLAN", "nfula_vlan"),
        ("NFULA_L2HDR", "cdata"),
    )

    class nfulnl_msg_packet_hdr(nla):  # type: ignore[misc]  # noqa: N801 - kernel name; pyroute2 is untyped
        fields = (("hw_protocol", "!H"), ("hook", "B"), ("_pad", "B"))

    class nfulnl_msg_packet_timestamp(nla):  # type: ignore[misc]  # noqa: N801 - kernel name; pyroute2 is untyped
        fields = (("sec", "!Q"), ("usec", "!Q"))

    class nfulnl_msg_packet_hw(nla):  # type: ignore[misc]  # noqa: N801 - kernel name; pyroute2 is untyped
        fields = (("hw_addrlen", "!H"), ("_pad", "H"), ("hw_addr", "8s"))

    class nfula_vlan(nla):  # type: ignore[misc]  # noqa: N801 - kernel name; pyroute2 is untyped
        prefix = "NFULA_VLAN_"
        nla_map = (
            ("NFULA_VLAN_UNSPEC", "none"),
            ("NFULA_VLAN_PROTO", "be16"),
            ("NFULA_VLAN_TCI", "be16"),
        )


class nfulnl_msg_config(nfgen_msg):  # type: ignore[misc]  # noqa: N801 - kernel name; pyroute2 is untyped
    """A configuration request (NFULNL_MSG_CONFIG) for one log group."""

    prefix = "NFULA_CFG_"
    nla_map = (
        ("NFULA_CFG_UNSPEC", "none"),
        ("NFULA_CFG_CMD", "nfulnl_msg_config_cmd"),
        ("NFULA_CFG_MODE", "nfulnl_msg_config_mode"),
        ("NFULA_CFG_NLBUFSIZ", "be32"),
        ("NFULA_CFG_TIMEOUT", "be32"),
        ("NFULA_CFG_QTHRESH", "be32"),
        ("NFULA_CFG_FLAGS", "be16"),
    )

    class nfulnl_msg_config_cmd(nla):  # type: ignore[misc]  # noqa: N801 - kernel name; pyroute2 is untyped
        fields = (("command", "B"),)

    class nfulnl_msg_config_mode(nla):  # type: ignore[misc]  # noqa: N801 - kernel name; pyroute2 is untyped
        fields = (("copy_range", "!I"), ("copy_mode", "B"), ("_pad", "B"))


class MarshalNflog(Marshal):  # type: ignore[misc]  # pyroute2 is untyped
    """pyroute2's generic parser, taught the two nfnetlink_log messages."""

    msg_map: ClassVar[dict[int, Any]] = {
        NFULNL_PACKET_TYPE: nfulnl_msg_packet,
        NFULNL_CONFIG_TYPE: nfulnl_msg_config,
    }


def config_request(group: int, sequence: int, attrs: list[tuple[str, Any]]) -> bytes:
    """Encode one NFULNL_MSG_CONFIG request for ``group`` that asks for an ack.

    ``attrs`` are (NFULA_CFG_* name, value) pairs, e.g.
    ``[("NFULA_CFG_CMD", {"command": NFULNL_CFG_CMD_BIND})]``.
    """
    msg = nfulnl_msg_config()
    msg["nfgen_family"] = socket.AF_UNSPEC
    msg["version"] = NFNETLINK_V0
    msg["res_id"] = group
    msg["attrs"] = [list(pair) for pair in attrs]
    msg["header"]["type"] = NFULNL_CONFIG_TYPE
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK
    msg["header"]["sequence_number"] = sequence
    msg["header"]["pid"] = 0
    msg.encode()
    return bytes(msg.data)


# --- the hot path ---

_NLMSGHDR: Final = struct.Struct("=IHHII")  # host order: len, type, flags, seq, pid
_NLMSG_LEN_TYPE: Final = struct.Struct("=IH")
_NLA: Final = struct.Struct("=HH")  # host order: len, type
_NLMSGERR: Final = struct.Struct("=i")
_BE32: Final = struct.Struct("!I")
_TIMESTAMP: Final = struct.Struct("!QQ")  # struct nfulnl_msg_packet_timestamp
_SEQ_MODULO: Final = 1 << 32
_SEQ_HALF: Final = 1 << 31


class MessageProblem(enum.StrEnum):
    """Why a netlink message itself, not the packet in it, is unusable.

    Like :class:`knocknft.netlink.packet.Discard` these are str values, so both kinds
    of reason key the same counters.
    """

    TRUNCATED = "netlink-truncated"
    BAD_ATTRIBUTE = "netlink-bad-attribute"
    NO_PAYLOAD = "no-payload"


@dataclass(slots=True)
class NflogCounters:
    """What the decoder saw, cumulatively.

    Every logged packet the kernel sent, and every unusable netlink message, is
    counted once in ``messages`` and once more in exactly one of ``decoded``,
    ``non_knock`` or ``malformed``. ``lost`` counts packets the kernel logged
    but could not queue (gaps in ``NFULA_SEQ``), ``overruns`` the ENOBUFS
    errors ``recv()`` reported.
    """

    messages: int = 0
    decoded: int = 0
    non_knock: dict[str, int] = field(default_factory=dict)
    malformed: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    overruns: int = 0
    control: int = 0
    """Netlink acks, NLMSG_DONE/NOOP/OVERRUN and messages of other types."""
    netlink_errors: int = 0
    """NLMSG_ERROR messages carrying an error code."""

    def balanced(self) -> bool:
        """True when every counted message has exactly one outcome."""
        return self.messages == (
            self.decoded + sum(self.non_knock.values()) + sum(self.malformed.values())
        )


class _Layout(NamedTuple):
    """Where the wanted attributes sit in messages shaped like one already walked.

    The kernel builds every message of a group the same way: the same
    attributes, in the same order, with the same lengths, up to the payload,
    which comes last. So after one full walk a single ``struct`` read at fixed
    offsets fetches every attribute header (to check the shape still holds)
    and the ifindex, timestamp and sequence values together.
    """

    unpack_from: Callable[[Buffer, int], tuple[int, ...]]
    headers: Callable[[tuple[int, ...]], tuple[int, ...]]
    header_words: tuple[int, ...]
    ifindex: int
    sec: int
    usec: int
    seq: int
    payload: int
    min_length: int
    shape: tuple[tuple[int, int, int], ...]


# How many message shapes to remember; one per (rule prefix, hook) in practice.
_MAX_LAYOUTS: Final = 8
# What a learned layout reads after the header of these attributes, and the
# attribute length that format implies.
_LAYOUT_VALUES: Final = {NFULA_IFINDEX_INDEV: "I", NFULA_TIMESTAMP: "QQ", NFULA_SEQ: "I"}
_LAYOUT_LENGTHS: Final = {
    kind: NLA_HDRLEN + struct.calcsize("!" + fmt) for kind, fmt in _LAYOUT_VALUES.items()
}


def _learn_layout(
    buffer: Buffer, offset: int, shape: tuple[tuple[int, int, int], ...], payload: int
) -> _Layout | None:
    """A layout for the message at ``offset``, if it has the usual shape.

    ``shape`` holds (offset in the message, length, type) of each attribute
    before the payload, which is last and at ``payload``. The usual shape has
    each of ifindex, timestamp and sequence once with its proper length.
    """
    lengths: dict[int, int] = {}
    for _, length, kind in shape:
        if kind in lengths and kind in _LAYOUT_LENGTHS:
            return None
        lengths[kind] = length
    if NFULA_PAYLOAD in lengths:
        return None
    for kind, length in _LAYOUT_LENGTHS.items():
        if lengths.get(kind) != length:
            return None
    # Headers are read as big-endian words whatever the host order: the layout
    # only compares them for equality with words read the same way.
    fmt = ["!"]
    position = 0
    index = 0
    header_indices = []
    value_index: dict[int, int] = {}
    for rel, _, kind in shape:
        fmt.append(f"{rel - position}xI")
        header_indices.append(index)
        index += 1
        position = rel + NLA_HDRLEN
        value = _LAYOUT_VALUES.get(kind)
        if value is not None:
            fmt.append(value)
            value_index[kind] = index
            index += len(value)
            position += struct.calcsize("!" + value)
    layout_struct = struct.Struct("".join(fmt))
    # Three or more indices, so itemgetter always returns a tuple.
    headers = operator.itemgetter(*header_indices)
    return _Layout(
        unpack_from=layout_struct.unpack_from,
        headers=headers,
        header_words=headers(layout_struct.unpack_from(buffer, offset)),
        ifindex=value_index[NFULA_IFINDEX_INDEV],
        sec=value_index[NFULA_TIMESTAMP],
        usec=value_index[NFULA_TIMESTAMP] + 1,
        seq=value_index[NFULA_SEQ],
        payload=payload,
        min_length=payload + NLA_HDRLEN,
        shape=shape,
    )


class NflogDecoder:
    """Decodes ``recv()`` buffers of nfnetlink_log messages into knock packets.

    It keeps the counters and the next expected ``NFULA_SEQ`` across buffers.
    ``next_seq`` is 0 for a group freshly bound by this socket (the kernel
    numbers from 0 per bind) or None to take the first number seen as the start.

    A message is read in one of two ways with the same result: by a learned
    :class:`_Layout` when its shape is one seen before (the fast path), else by
    walking its attributes one by one, which also learns its shape.
    """

    __slots__ = ("_layouts", "counters", "next_seq")

    def __init__(self, next_seq: int | None = None) -> None:
        self.counters = NflogCounters()
        self.next_seq = next_seq
        self._layouts: list[_Layout] = []

    def decode(self, buffer: Buffer, now: float) -> list[KnockPacket]:
        """Decode every message in ``buffer``; ``now`` stands in for a missing timestamp."""
        packets: list[KnockPacket] = []
        append = packets.append
        counters = self.counters
        layouts = self._layouts
        message_header = _NLMSG_LEN_TYPE.unpack_from
        nla_header = _NLA.unpack_from
        size = len(buffer)
        offset = 0
        while offset < size:
            if size - offset < NLMSG_HDRLEN:
                self._malformed(MessageProblem.TRUNCATED)
                break
            length, msg_type = message_header(buffer, offset)
            if length < NLMSG_HDRLEN or length > size - offset:
                # Without a trustworthy length there is no next message to find.
                self._malformed(MessageProblem.TRUNCATED)
                break
            if msg_type == NFULNL_PACKET_TYPE:
                counters.messages += 1
                for layout in layouts:
                    unpack, headers, words, i_index, i_sec, i_usec, i_seq, at, least, _ = layout
                    if length < least:
                        continue
                    row = unpack(buffer, offset)
                    if headers(row) != words:
                        continue
                    payload = offset + at
                    payload_length, payload_type = nla_header(buffer, payload)
                    # The payload must end the message, as the kernel builds it;
                    # anything else is left to the full walk to judge.
                    if (
                        payload_type & NLA_TYPE_MASK != NFULA_PAYLOAD
                        or payload_length < NLA_HDRLEN
                        or at + ((payload_length + 3) & ~3) != length
                    ):
                        continue
                    payload_end = payload + payload_length
                    payload += NLA_HDRLEN
                    ifindex = row[i_index]
                    sec = row[i_sec]
                    # ulogd's rule: a zero second count is no timestamp.
                    stamp = sec + row[i_usec] / 1e6 if sec else now
                    seq = row[i_seq]
                    damaged = False
                    break
                else:
                    payload, payload_end, ifindex, stamp, seq, damaged = self._walk(
                        buffer, offset, length, now
                    )
                if seq >= 0:
                    expected = self.next_seq
                    if expected is not None and seq != expected:
                        gap = (seq - expected) % _SEQ_MODULO
                        # A "gap" of more than half the space is the counter
                        # restarting (a rebind), not four billion losses.
                        if gap < _SEQ_HALF:
                            counters.lost += gap
                    self.next_seq = (seq + 1) % _SEQ_MODULO
                if damaged:
                    reason: str = MessageProblem.BAD_ATTRIBUTE
                elif payload < 0:
                    reason = MessageProblem.NO_PAYLOAD
                else:
                    result = decode_packet(buffer, stamp, ifindex, payload, payload_end)
                    if isinstance(result, KnockPacket):
                        counters.decoded += 1
                        append(result)
                        offset += (length + 3) & ~3
                        continue
                    reason = result
                    if not result.malformed:
                        non_knock = counters.non_knock
                        non_knock[reason] = non_knock.get(reason, 0) + 1
                        offset += (length + 3) & ~3
                        continue
                malformed = counters.malformed
                malformed[reason] = malformed.get(reason, 0) + 1
            elif msg_type == NLMSG_ERROR and length >= NLMSG_HDRLEN + 4:
                if _NLMSGERR.unpack_from(buffer, offset + NLMSG_HDRLEN)[0]:
                    counters.netlink_errors += 1
                else:
                    counters.control += 1
            else:
                counters.control += 1
            offset += (length + 3) & ~3
        return packets

    def _walk(
        self, buffer: Buffer, offset: int, length: int, now: float
    ) -> tuple[int, int, int, float, int, bool]:
        """Read a message attribute by attribute; learn its layout when it has the usual shape.

        Returns (payload start or -1, payload end, ifindex, timestamp, seq or -1, damaged).
        """
        end = offset + length
        attr = offset + NLMSG_HDRLEN + NFGENMSG_LEN
        payload = -1
        payload_end = 0
        ifindex = 0
        stamp = now
        seq = -1
        seen: list[tuple[int, int, int]] = []
        if attr > end:
            return payload, payload_end, ifindex, stamp, seq, True
        while attr < end:
            if end - attr < NLA_HDRLEN:
                return payload, payload_end, ifindex, stamp, seq, True
            attr_length, attr_type = _NLA.unpack_from(buffer, attr)
            if attr_length < NLA_HDRLEN or attr_length > end - attr:
                return payload, payload_end, ifindex, stamp, seq, True
            attr_type &= NLA_TYPE_MASK
            if attr_type == NFULA_PAYLOAD:
                payload = attr + NLA_HDRLEN
                payload_end = attr + attr_length
            else:
                seen.append((attr - offset, attr_length, attr_type))
                if attr_type == NFULA_IFINDEX_INDEV:
                    if attr_length >= 8:
                        ifindex = _BE32.unpack_from(buffer, attr + NLA_HDRLEN)[0]
                elif attr_type == NFULA_TIMESTAMP:
                    if attr_length >= 20:
                        sec, usec = _TIMESTAMP.unpack_from(buffer, attr + NLA_HDRLEN)
                        stamp = sec + usec / 1e6 if sec else now
                elif attr_type == NFULA_SEQ and attr_length >= 8:
                    seq = _BE32.unpack_from(buffer, attr + NLA_HDRLEN)[0]
            attr += (attr_length + 3) & ~3
        # Learn the shape only when the payload came last and ends the message.
        if payload >= 0 and (payload_end + 3) & ~3 == end:
            self._learn(buffer, offset, tuple(seen), payload - NLA_HDRLEN - offset)
        return payload, payload_end, ifindex, stamp, seq, False

    def _learn(
        self, buffer: Buffer, offset: int, shape: tuple[tuple[int, int, int], ...], payload: int
    ) -> None:
        layouts = self._layouts
        if any(layout.shape == shape for layout in layouts):
            return
        if shape and shape[-1][0] + ((shape[-1][1] + 3) & ~3) != payload:
            return
        layout = _learn_layout(buffer, offset, shape, payload)
        if layout is not None:
            layouts.insert(0, layout)
            del layouts[_MAX_LAYOUTS:]

    def _malformed(self, reason: str) -> None:
        counters = self.counters
        counters.messages += 1
        counters.malformed[reason] = counters.malformed.get(reason, 0) + 1


def iter_messages(buffer: Buffer) -> Iterator[tuple[int, int, int, int]]:
    """Yield (offset, length, type, sequence) of each whole netlink message in ``buffer``."""
    offset = 0
    size = len(buffer)
    while size - offset >= NLMSG_HDRLEN:
        length, msg_type, _, sequence, _ = _NLMSGHDR.unpack_from(buffer, offset)
        if length < NLMSG_HDRLEN or length > size - offset:
            return
        yield offset, length, msg_type, sequence
        offset += (length + 3) & ~3


# --- the socket ---


def set_socket_buffer(sock: socket.socket, size: int, *, send: bool = False) -> None:
    """Give `sock` a receive (or send) buffer of `size` bytes.

    FORCE passes net.core.rmem_max/wmem_max, which are small by default, but needs
    CAP_NET_ADMIN; without it take what the sysctl allows.
    """
    force, plain = (
        (SO_SNDBUFFORCE, socket.SO_SNDBUF) if send else (SO_RCVBUFFORCE, socket.SO_RCVBUF)
    )
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, plain, size)


_CAP_NET_ADMIN: Final = 12


def _has_net_admin() -> bool | None:
    """Whether this process holds CAP_NET_ADMIN; None when /proc cannot say."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_NET_ADMIN & 1)
    except (OSError, ValueError):
        return None
    return None


class NflogError(KnocknftError):
    """The kernel refused an NFLOG request, or the NFLOG socket failed."""


class NflogGroupBusy(NflogError):
    """Another socket already owns the NFLOG group."""


_RECV_SIZE: Final = 1 << 20
_RECEIVE_BUFFER: Final = 8 << 20
# recv() calls per read_batch(): about 2 ms of work at full speed, so timers stay on time.
_BATCH_RECVS: Final = 256


class NflogSocket:
    """A netlink socket bound to one NFLOG group, yielding knock packets.

    The socket is non-blocking: wait for :meth:`fileno` to be readable (select,
    poll, an event loop), then call :meth:`read_batch`, which does one
    ``recv()`` per queued message, up to a limit, and decodes them all. Binding fails with
    :class:`NflogGroupBusy` when another socket owns the group.

    Each packet is handed over as soon as it is logged (queue threshold 1), and
    only its first ``copy_range`` bytes are copied: enough for IP, extension
    and transport headers, while keeping each message small so a burst fits the
    receive buffer.
    """

    def __init__(
        self,
        group: int,
        *,
        copy_range: int = 128,
        queue_threshold: int = 1,
        flush_timeout: float = 0.01,
        receive_buffer: int = _RECEIVE_BUFFER,
        clock: Callable[[], float] = time.time,
        ack_timeout: float = 5.0,
    ) -> None:
        if not 0 <= group <= 0xFFFF:
            raise NflogError(f"NFLOG group {group} is out of range: use 0-65535")
        self.group = group
        self._clock = clock
        self._ack_timeout = ack_timeout
        self._sequence = 0
        self._backlog: list[bytes] = []
        self._buffer = bytearray(_RECV_SIZE)
        self._view = memoryview(self._buffer)
        self._decoder = NflogDecoder(next_seq=0)
        try:
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        except OSError as exc:
            raise NflogError(f"cannot open a netfilter netlink socket: {exc}") from exc
        self._closed = False
        self._bound = False
        try:
            self._sock.bind((0, 0))
            set_socket_buffer(self._sock, receive_buffer)
            # Overflow is reported by NFULA_SEQ gaps instead: an ENOBUFS error
            # says only "something was lost" and interrupts the reader.
            self._sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
            self._sock.setblocking(False)
            self._configure("bind", [("NFULA_CFG_CMD", {"command": NFULNL_CFG_CMD_BIND})])
            self._bound = True
            self._configure(
                "mode",
                [
                    (
                        "NFULA_CFG_MODE",
                        {"copy_range": copy_range, "copy_mode": NFULNL_COPY_PACKET},
                    ),
                    ("NFULA_CFG_QTHRESH", queue_threshold),
                    ("NFULA_CFG_TIMEOUT", max(0, round(flush_timeout * 100))),
                    ("NFULA_CFG_FLAGS", NFULNL_CFG_F_SEQ),
                ],
            )
        except BaseException:
            self.close()
            raise

    @property
    def counters(self) -> NflogCounters:
        return self._decoder.counters

    def fileno(self) -> int:
        return self._sock.fileno()

    def read_batch(self, limit: int = _BATCH_RECVS) -> list[KnockPacket]:
        """Decode what is queued, up to ``limit`` ``recv()`` calls; [] when nothing is pending.

        With queue threshold 1 each ``recv()`` returns one message, so a batch of many saves
        the caller's per-batch work (its loop, its timers) for every packet but the first.
        """
        decode = self._decoder.decode
        now = self._clock()
        if self._backlog:
            return decode(self._backlog.pop(0), now)
        packets: list[KnockPacket] = []
        recv = self._recv_into
        view = self._view
        for _ in range(limit):
            size = recv()
            if size <= 0:
                break
            packets += decode(view[:size], now)
        return packets

    def recv_buffer(self) -> bytes | None:
        """One ``recv()`` of raw netlink bytes, undecoded; None when nothing is pending.

        For capturing test data and debugging; the daemon uses :meth:`read_batch`.
        """
        if self._backlog:
            return self._backlog.pop(0)
        size = self._recv_into()
        if size <= 0:
            return None
        return bytes(self._view[:size])

    def close(self) -> None:
        """Unbind the group (so another process may take it) and close the socket."""
        if self._closed:
            return
        self._closed = True
        if self._bound:
            self._bound = False
            # The kernel also destroys the instance when the socket goes away;
            # unbinding first just makes the release immediate and explicit.
            with contextlib.suppress(NflogError):
                self._configure("unbind", [("NFULA_CFG_CMD", {"command": NFULNL_CFG_CMD_UNBIND})])
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _recv_into(self) -> int:
        for _ in range(2):
            try:
                return self._sock.recv_into(self._buffer, _RECV_SIZE)
            except BlockingIOError:
                return 0
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise NflogError(f"NFLOG group {self.group}: recv failed: {exc}") from exc
                # The kernel dropped messages; what is still queued is valid.
                self._decoder.counters.overruns += 1
        return 0

    def _configure(self, what: str, attrs: list[tuple[str, Any]]) -> None:
        self._sequence = (self._sequence + 1) & 0xFFFFFFFF
        sequence = self._sequence
        request = config_request(self.group, sequence, attrs)
        try:
            self._sock.send(request)
        except OSError as exc:
            raise NflogError(f"NFLOG group {self.group}: cannot send {what}: {exc}") from exc
        code = self._await_ack(what, sequence)
        if code == 0:
            return
        group = self.group
        # The kernel answers EPERM both to a process without CAP_NET_ADMIN and
        # to a bind of a group another socket owns; the capability tells which.
        if code == errno.EPERM and _has_net_admin() is False:
            raise NflogError(
                f"NFLOG group {group}: {what} needs CAP_NET_ADMIN; run as root or grant "
                "the capability (systemd: AmbientCapabilities=CAP_NET_ADMIN)"
            )
        if what == "bind" and code == errno.EPERM:
            raise NflogGroupBusy(
                f"NFLOG group {group} is already bound by another socket (ulogd, another "
                "knocknft?); stop that reader or use another group in both the config and "
                "the log rule"
            )
        if what == "bind" and code == errno.EBUSY:
            raise NflogGroupBusy(f"NFLOG group {group} is already bound by this socket")
        hint = (
            " (is the nfnetlink_log module available?)"
            if code in (errno.ENOENT, errno.EOPNOTSUPP, errno.EPROTONOSUPPORT)
            else ""
        )
        raise NflogError(
            f"NFLOG group {group}: the kernel refused {what}: {os.strerror(code)}{hint}"
        )

    def _await_ack(self, what: str, sequence: int) -> int:
        """Wait for the kernel's answer to ``sequence``; keep any packets that arrive meanwhile."""
        deadline = time.monotonic() + self._ack_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NflogError(f"NFLOG group {self.group}: no answer to {what} from the kernel")
            readable, _, _ = select.select([self._sock], [], [], remaining)
            if not readable:
                continue
            try:
                size = self._sock.recv_into(self._buffer, _RECV_SIZE)
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self._decoder.counters.overruns += 1
                    continue
                raise NflogError(f"NFLOG group {self.group}: recv failed: {exc}") from exc
            data = bytes(self._view[:size])
            answer: int | None = None
            others = False
            for offset, length, msg_type, msg_seq in iter_messages(data):
                if msg_type == NLMSG_ERROR and msg_seq == sequence and length >= 20:
                    answer = -_NLMSGERR.unpack_from(data, offset + NLMSG_HDRLEN)[0]
                else:
                    others = True
            if others:
                self._backlog.append(data)
            if answer is not None:
                return answer
