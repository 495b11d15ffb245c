"""nf_tables change notifications: what happens to our table, as the kernel announces it.

The kernel multicasts every committed ruleset change to the netlink group NFNLGRP_NFTABLES (what
`nft monitor` reads). The daemon listens to learn two things without polling: that our table was
deleted (`nft flush ruleset`, a firewall reload that starts with one), and which grants our sets
hold, whoever added or removed them (the daemon, `knocknft open`/`close`, a closing door), so
it can put them back. Elements that expire are not announced; their end is known from the
announced expiration.

`decode_events` is pure; `TableEvents` is the thin adapter around the netlink socket. The
kernel's names (`NFT_MSG_DELTABLE`, `NFTA_SET_ELEM_EXPIRATION`) stay in this module and setelem.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from knocknft.config import IPAddress, PortSpec
from knocknft.core.grants import ALLOW4, ALLOW6
from knocknft.errors import NftError
from knocknft.netlink.nflog import (
    NETLINK_NETFILTER,
    NLA_TYPE_MASK,
    iter_messages,
    set_socket_buffer,
)
from knocknft.netlink.setelem import (
    NFNL_SUBSYS_NFTABLES,
    NFPROTO_INET,
    NFT_MSG_DELSETELEM,
    NFT_MSG_NEWSETELEM,
    NFTA_DATA_VALUE,
    NFTA_LIST_ELEM,
    NFTA_SET_ELEM_KEY,
    NFTA_SET_ELEM_LIST_ELEMENTS,
    NFTA_SET_ELEM_LIST_SET,
    NFTA_SET_ELEM_LIST_TABLE,
    NFTA_SET_ELEM_USERDATA,
    NFTNL_UDATA_SET_ELEM_COMMENT,
)

NFNLGRP_NFTABLES: Final = 7
NFT_MSG_DELTABLE: Final = 2
NFTA_TABLE_NAME: Final = 1
NFTA_SET_ELEM_EXPIRATION: Final = 5

_HEADERS: Final = 16 + 4  # nlmsghdr + nfgenmsg
_NLA: Final = struct.Struct("=HH")
_PROTOCOLS: Final = {socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp"}
_RECV_SIZE: Final = 1 << 16
# A firewall reload announces every rule of every table at once; room for that, so that our
# own table's news is not what gets dropped.
_RECEIVE_BUFFER: Final = 4 << 20


@dataclass(frozen=True)
class TableDeleted:
    """Our table is gone, and with it every element of its sets."""


@dataclass(frozen=True)
class ElementAdded:
    address: IPAddress
    service: PortSpec
    door: str  # the element's comment
    expires_in: float | None  # seconds; None when the kernel did not say


@dataclass(frozen=True)
class ElementDeleted:
    address: IPAddress
    service: PortSpec


@dataclass(frozen=True)
class EventsLost:
    """The socket overflowed: some announcements are lost, so the kernel must be asked."""


TableEvent = TableDeleted | ElementAdded | ElementDeleted | EventsLost


def _attrs(data: bytes, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each netlink attribute in data[start:end]."""
    offset = start
    while offset + _NLA.size <= end:
        length, kind = _NLA.unpack_from(data, offset)
        if length < _NLA.size or offset + length > end:
            return
        yield kind & NLA_TYPE_MASK, data[offset + _NLA.size : offset + length]
        offset += (length + 3) & ~3


def _nested(payload: bytes) -> Iterator[tuple[int, bytes]]:
    return _attrs(payload, 0, len(payload))


def _name(payload: bytes) -> str:
    return payload.split(b"\0", 1)[0].decode("utf-8", "replace")


def decode_events(data: bytes, table: str) -> list[TableEvent]:
    """What one recv() of notifications says about `table`; everything else is skipped."""
    events: list[TableEvent] = []
    for offset, length, msg_type, _ in iter_messages(data):
        if msg_type >> 8 != NFNL_SUBSYS_NFTABLES or length < _HEADERS:
            continue
        if data[offset + 16] != NFPROTO_INET:
            continue
        kind = msg_type & 0xFF
        attrs = dict(_attrs(data, offset + _HEADERS, offset + length))
        if kind == NFT_MSG_DELTABLE:
            if _name(attrs.get(NFTA_TABLE_NAME, b"")) == table:
                events.append(TableDeleted())
        elif kind in (NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM):
            if _name(attrs.get(NFTA_SET_ELEM_LIST_TABLE, b"")) != table:
                continue
            set_name = _name(attrs.get(NFTA_SET_ELEM_LIST_SET, b""))
            if set_name not in (ALLOW4, ALLOW6):
                continue  # the rules' anonymous sets
            width = 4 if set_name == ALLOW4 else 16
            for kind_, element in _nested(attrs.get(NFTA_SET_ELEM_LIST_ELEMENTS, b"")):
                if kind_ == NFTA_LIST_ELEM:
                    event = _element(element, width, added=kind == NFT_MSG_NEWSETELEM)
                    if event is not None:
                        events.append(event)
    return events


def _element(payload: bytes, width: int, added: bool) -> ElementAdded | ElementDeleted | None:
    attrs = dict(_nested(payload))
    key = dict(_nested(attrs.get(NFTA_SET_ELEM_KEY, b""))).get(NFTA_DATA_VALUE, b"")
    # address, then the protocol and the port, each padded to 4 bytes (setelem.element_key).
    if len(key) != width + 8 or key[width] not in _PROTOCOLS:
        return None
    address = ipaddress.ip_address(key[:width])
    (port,) = struct.unpack_from("!H", key, width + 4)
    service = PortSpec(port, "tcp" if _PROTOCOLS[key[width]] == "tcp" else "udp")
    if not added:
        return ElementDeleted(address, service)
    expiration = attrs.get(NFTA_SET_ELEM_EXPIRATION, b"")
    expires_in = struct.unpack("!Q", expiration)[0] / 1000 if len(expiration) == 8 else None
    door = _comment(attrs.get(NFTA_SET_ELEM_USERDATA, b""))
    return ElementAdded(address, service, door, expires_in)


def _comment(userdata: bytes) -> str:
    """The comment in libnftnl's user-data TLVs (one byte type, one byte length)."""
    offset = 0
    while offset + 2 <= len(userdata):
        kind, length = userdata[offset], userdata[offset + 1]
        value = userdata[offset + 2 : offset + 2 + length]
        if kind == NFTNL_UDATA_SET_ELEM_COMMENT:
            return _name(value)
        offset += 2 + length
    return ""


class TableEvents:
    """A netlink socket subscribed to nf_tables' notifications; non-blocking."""

    def __init__(self, receive_buffer: int = _RECEIVE_BUFFER) -> None:
        try:
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        except OSError as exc:
            raise NftError(f"cannot open a netfilter netlink socket: {exc}") from exc
        try:
            self._sock.bind((0, 1 << (NFNLGRP_NFTABLES - 1)))
            set_socket_buffer(self._sock, receive_buffer)
            self._sock.setblocking(False)
        except OSError as exc:
            self._sock.close()
            raise NftError(f"cannot listen to nf_tables notifications: {exc}") from exc

    def fileno(self) -> int:
        return self._sock.fileno()

    def read(self, table: str) -> list[TableEvent]:
        """Everything queued now, decoded for `table`; EventsLost if the kernel dropped some."""
        events: list[TableEvent] = []
        while True:
            try:
                data = self._sock.recv(_RECV_SIZE)
            except BlockingIOError:
                return events
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise NftError(f"nf_tables notifications: recv failed: {exc}") from exc
                events.append(EventsLost())
                continue
            events += decode_events(data, table)

    def close(self) -> None:
        self._sock.close()
