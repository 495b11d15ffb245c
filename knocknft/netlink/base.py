"""Netlink basics every knocknft socket shares: constants, message and attribute walking, buffers.

The constants come from pyroute2, which spells them after the kernel's headers; each is bound
here once with its type, because pyroute2 ships no type hints (to mypy its names are Any). A
constant is defined locally only where pyroute2 0.9.7 has no module-level name for it, and the
comment says so. Protocol-specific names stay with their protocol: nfnetlink_log's in
:mod:`knocknft.netlink.nflog_messages`, the set-element attributes in
:mod:`knocknft.netlink.element`.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from typing import Final, TypeAlias

from pyroute2 import netlink as _netlink
from pyroute2.netlink import nfnetlink as _nfnetlink
from pyroute2.netlink.nfnetlink import nftsocket as _nftsocket

__all__ = [
    "NETLINK_NETFILTER",
    "NETLINK_NO_ENOBUFS",
    "NFGENMSG_LEN",
    "NFNETLINK_V0",
    "NFNLGRP_NFTABLES",
    "NFNL_MSG_BATCH_BEGIN",
    "NFNL_MSG_BATCH_END",
    "NFNL_SUBSYS_NFTABLES",
    "NFNL_SUBSYS_ULOG",
    "NFPROTO_INET",
    "NFT_MSG_DELRULE",
    "NFT_MSG_DELSETELEM",
    "NFT_MSG_DELTABLE",
    "NFT_MSG_NEWSETELEM",
    "NLA",
    "NLA_F_NESTED",
    "NLA_F_NET_BYTEORDER",
    "NLA_HDRLEN",
    "NLA_TYPE_MASK",
    "NLMSGERR",
    "NLMSGHDR",
    "NLMSG_DONE",
    "NLMSG_ERROR",
    "NLMSG_HDRLEN",
    "NLMSG_NOOP",
    "NLMSG_OVERRUN",
    "NLM_F_ACK",
    "NLM_F_CREATE",
    "NLM_F_REQUEST",
    "SOL_NETLINK",
    "Buffer",
    "align",
    "attr",
    "decode_string",
    "encode_string",
    "iter_acks",
    "iter_attrs",
    "iter_messages",
    "nest",
    "nfgen_message",
    "set_socket_buffer",
]

Buffer: TypeAlias = bytes | bytearray | memoryview
"""Anything ``struct.unpack_from`` reads and that indexes to ints: a recv() buffer or a view."""

# --- include/uapi/linux/netlink.h ---

NETLINK_NETFILTER: Final[int] = _netlink.NETLINK_NETFILTER
SOL_NETLINK: Final[int] = _netlink.SOL_NETLINK
NETLINK_NO_ENOBUFS: Final[int] = _netlink.NETLINK_NO_ENOBUFS

NLM_F_REQUEST: Final[int] = _netlink.NLM_F_REQUEST
NLM_F_ACK: Final[int] = _netlink.NLM_F_ACK
NLM_F_CREATE: Final[int] = _netlink.NLM_F_CREATE
NLMSG_NOOP: Final[int] = _netlink.NLMSG_NOOP
NLMSG_ERROR: Final[int] = _netlink.NLMSG_ERROR
NLMSG_DONE: Final[int] = _netlink.NLMSG_DONE
NLMSG_OVERRUN: Final[int] = _netlink.NLMSG_OVERRUN
NLA_F_NESTED: Final[int] = _netlink.NLA_F_NESTED
NLA_F_NET_BYTEORDER: Final[int] = _netlink.NLA_F_NET_BYTEORDER
# pyroute2 has no NLA_TYPE_MASK (the kernel's is the complement of the two flags).
NLA_TYPE_MASK: Final[int] = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xFFFF

# Header layouts; pyroute2 keeps them as struct formats inside its classes, not as names.
NLMSGHDR: Final = struct.Struct("=IHHII")  # host order: len, type, flags, seq, pid
NLMSGERR: Final = struct.Struct("=i")  # the negated errno that starts an NLMSG_ERROR body
NLA: Final = struct.Struct("=HH")  # host order: len, type
NLMSG_HDRLEN: Final = NLMSGHDR.size
NLA_HDRLEN: Final = NLA.size

# --- include/uapi/linux/netfilter/nfnetlink.h ---

NFNL_SUBSYS_ULOG: Final[int] = _nfnetlink.NFNL_SUBSYS_ULOG
NFNL_SUBSYS_NFTABLES: Final[int] = _nfnetlink.NFNL_SUBSYS_NFTABLES
NFNLGRP_NFTABLES: Final[int] = _nfnetlink.NFNLGRP_NFTABLES
# Not in pyroute2 0.9.7: the nfgenmsg version, its size, and the batch markers.
NFNETLINK_V0: Final = 0
NFGENMSG_LEN: Final = 4  # family, version, res_id
NFNL_MSG_BATCH_BEGIN: Final = 0x10
NFNL_MSG_BATCH_END: Final = 0x11

# --- include/uapi/linux/netfilter/nf_tables.h, netfilter.h ---

NFT_MSG_DELTABLE: Final[int] = _nftsocket.NFT_MSG_DELTABLE
NFT_MSG_DELRULE: Final[int] = _nftsocket.NFT_MSG_DELRULE
NFT_MSG_NEWSETELEM: Final[int] = _nftsocket.NFT_MSG_NEWSETELEM
NFT_MSG_DELSETELEM: Final[int] = _nftsocket.NFT_MSG_DELSETELEM
NFPROTO_INET: Final[int] = _nftsocket.NFPROTO_INET

# Only the privileged variants pass net.core.rmem_max/wmem_max; older Pythons lack the names.
_SO_RCVBUFFORCE: Final = getattr(socket, "SO_RCVBUFFORCE", 33)
_SO_SNDBUFFORCE: Final = getattr(socket, "SO_SNDBUFFORCE", 32)


def interface_names() -> frozenset[str]:
    """The network interfaces of this namespace now, by name: what `interfaces` must name."""
    return frozenset(name for _, name in socket.if_nameindex())


def align(length: int) -> int:
    """`length` rounded up to netlink's 4-byte alignment (NLMSG_ALIGN, NLA_ALIGN)."""
    return (length + 3) & ~3


# --- walking ---


def iter_messages(buffer: Buffer) -> Iterator[tuple[int, int, int, int]]:
    """Yield (offset, length, type, sequence) of each whole netlink message in ``buffer``."""
    offset = 0
    size = len(buffer)
    while size - offset >= NLMSG_HDRLEN:
        length, msg_type, _, sequence, _ = NLMSGHDR.unpack_from(buffer, offset)
        if length < NLMSG_HDRLEN or length > size - offset:
            return
        yield offset, length, msg_type, sequence
        offset += align(length)


def iter_attrs(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
    """(type without flags, payload) of each whole attribute in data[start:end]."""
    stop = len(data) if end is None else end
    offset = start
    while offset + NLA_HDRLEN <= stop:
        length, kind = NLA.unpack_from(data, offset)
        if length < NLA_HDRLEN or offset + length > stop:
            return
        yield kind & NLA_TYPE_MASK, data[offset + NLA_HDRLEN : offset + length]
        offset += align(length)


def iter_acks(data: bytes) -> Iterator[tuple[int, int]]:
    """(sequence number, errno) of each NLMSG_ERROR in a netlink buffer; errno 0 is an ack."""
    for offset, length, kind, seq in iter_messages(data):
        if kind == NLMSG_ERROR and length >= NLMSG_HDRLEN + NLMSGERR.size:
            (code,) = NLMSGERR.unpack_from(data, offset + NLMSG_HDRLEN)
            yield seq, -code


# --- building ---


def encode_string(text: str) -> bytes:
    """A string attribute's payload: UTF-8 with the NUL the kernel's NLA_STRING checks expect."""
    return text.encode() + b"\0"


def decode_string(payload: bytes) -> str:
    """A string attribute's text, up to its NUL; undecodable bytes are replaced, not fatal."""
    return payload.split(b"\0", 1)[0].decode("utf-8", "replace")


def attr(kind: int, payload: bytes) -> bytes:
    """One attribute, padded to the next attribute's alignment."""
    length = NLA_HDRLEN + len(payload)
    return NLA.pack(length, kind) + payload + b"\0" * (align(length) - length)


def nest(kind: int, *attrs: bytes) -> bytes:
    """An attribute holding ``attrs``, flagged nested as the kernel's parsers expect."""
    return attr(kind | NLA_F_NESTED, b"".join(attrs))


def nfgen_message(
    kind: int, flags: int, seq: int, body: bytes = b"", *, family: int, res_id: int = 0
) -> bytes:
    """One nfnetlink message: header, nfgenmsg (family, version, res_id in network order), body."""
    header = struct.pack("=BB", family, NFNETLINK_V0) + struct.pack("!H", res_id)
    length = NLMSG_HDRLEN + NFGENMSG_LEN + len(body)
    return NLMSGHDR.pack(length, kind, flags, seq, 0) + header + body


# --- sockets ---


def set_socket_buffer(sock: socket.socket, size: int, *, send: bool = False) -> None:
    """Give `sock` a receive (or send) buffer of `size` bytes.

    FORCE passes net.core.rmem_max/wmem_max, which are small by default, but needs
    CAP_NET_ADMIN; without it take what the sysctl allows.
    """
    force, plain = (
        (_SO_SNDBUFFORCE, socket.SO_SNDBUF) if send else (_SO_RCVBUFFORCE, socket.SO_RCVBUF)
    )
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, plain, size)
