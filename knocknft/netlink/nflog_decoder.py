"""The NFLOG hot path: one ``recv()`` buffer of nfnetlink_log messages in, knock packets out.

:class:`NflogDecoder` walks a buffer with a few ``struct`` reads per message, picks the four
attributes a knock needs, hands the payload to :func:`knocknft.netlink.packet.decode_packet`, and
counts every outcome in :class:`NflogCounters`, including packets the kernel dropped (gaps in
``NFULA_SEQ``). It does no I/O; :class:`knocknft.netlink.nflog.NflogSocket` feeds it.
"""

from __future__ import annotations

import enum
import operator
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from knocknft.netlink.base import (
    NFGENMSG_LEN,
    NLA,
    NLA_HDRLEN,
    NLA_TYPE_MASK,
    NLMSG_ERROR,
    NLMSG_HDRLEN,
    NLMSGERR,
    Buffer,
)
from knocknft.netlink.nflog_messages import (
    NFULA_IFINDEX_INDEV,
    NFULA_PAYLOAD,
    NFULA_SEQ,
    NFULA_TIMESTAMP,
    NFULNL_PACKET_TYPE,
)
from knocknft.netlink.packet import KnockPacket, decode_packet

__all__ = ["MessageProblem", "NflogCounters", "NflogDecoder"]


_NLMSG_LEN_TYPE: Final = struct.Struct("=IH")
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

    def decode(self, buffer: Buffer, now: float) -> list[KnockPacket]:  # noqa: C901, PLR0912, PLR0915 - the per-packet hot path, flat on purpose: a call per attribute costs more
        """Decode every message in ``buffer``; ``now`` stands in for a missing timestamp."""
        packets: list[KnockPacket] = []
        append = packets.append
        counters = self.counters
        layouts = self._layouts
        message_header = _NLMSG_LEN_TYPE.unpack_from
        nla_header = NLA.unpack_from
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
                if NLMSGERR.unpack_from(buffer, offset + NLMSG_HDRLEN)[0]:
                    counters.netlink_errors += 1
                else:
                    counters.control += 1
            else:
                counters.control += 1
            offset += (length + 3) & ~3
        return packets

    def _walk(  # noqa: C901 - the per-packet hot path, flat on purpose: a call per attribute costs more
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
            attr_length, attr_type = NLA.unpack_from(buffer, attr)
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
