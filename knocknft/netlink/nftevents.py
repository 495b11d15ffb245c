"""nf_tables change notifications: what happens to our table, as the kernel announces it.

The kernel multicasts every committed ruleset change to the netlink group NFNLGRP_NFTABLES (what
`nft monitor` reads). The daemon listens to learn two things without polling: that our table was
deleted (`nft flush ruleset`, a firewall reload that starts with one) or lost rules (`nft flush
table`), and which grants and bans our sets hold, whoever added or removed them (the daemon,
`knocknft open`/`close`, a closing door), so it can put them back. Elements that expire are not
announced; their end is known from the announced expiration.

`decode_events` is pure; `TableEvents` is the thin adapter around the netlink socket. An element's
bytes are read by `knocknft.netlink.element`, the same codec that writes them for setelem.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from typing import Final

from knocknft.config import DenyScope, IPAddress, PortSpec
from knocknft.core.bans import DENY_SETS
from knocknft.core.grants import ALLOW4, ALLOW6, set_for
from knocknft.errors import NftError
from knocknft.netlink.base import (
    NETLINK_NETFILTER,
    NFGENMSG_LEN,
    NFNL_SUBSYS_NFTABLES,
    NFNLGRP_NFTABLES,
    NFPROTO_INET,
    NFT_MSG_DELRULE,
    NFT_MSG_DELSETELEM,
    NFT_MSG_DELTABLE,
    NFT_MSG_NEWSETELEM,
    NLMSG_HDRLEN,
    decode_string,
    iter_attrs,
    iter_messages,
    set_socket_buffer,
)
from knocknft.netlink.element import ElementList, decode_element_list

# include/uapi/linux/netfilter/nf_tables.h; pyroute2 0.9.7 has no constant for them.
NFTA_TABLE_NAME: Final = 1
NFTA_RULE_TABLE: Final = 1
# (set name) -> scope, for the deny sets' elements.
_DENY_SCOPES: Final = {name: scope for (scope, _), name in DENY_SETS.items()}

_HEADERS: Final = NLMSG_HDRLEN + NFGENMSG_LEN
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
class RulesDeleted:
    """Rules of our table were deleted: by our own reapply, or by `nft flush table`."""


@dataclass(frozen=True)
class BanAdded:
    address: IPAddress
    scope: DenyScope
    door: str  # the element's comment
    expires_in: float | None  # seconds; None when the kernel did not say


@dataclass(frozen=True)
class BanDeleted:
    address: IPAddress
    scope: DenyScope


@dataclass(frozen=True)
class EventsLost:
    """The socket overflowed: some announcements are lost, so the kernel must be asked."""


TableEvent = (
    TableDeleted | RulesDeleted | ElementAdded | ElementDeleted | BanAdded | BanDeleted | EventsLost
)


def decode_events(data: bytes, table: str) -> list[TableEvent]:
    """What one recv() of notifications says about `table`; everything else is skipped."""
    events: list[TableEvent] = []
    for offset, length, msg_type, _ in iter_messages(data):
        if msg_type >> 8 != NFNL_SUBSYS_NFTABLES or length < _HEADERS:
            continue
        if data[offset + NLMSG_HDRLEN] != NFPROTO_INET:
            continue
        kind = msg_type & 0xFF
        body = data[offset + _HEADERS : offset + length]
        if kind == NFT_MSG_DELTABLE:
            if decode_string(dict(iter_attrs(body)).get(NFTA_TABLE_NAME, b"")) == table:
                events.append(TableDeleted())
        elif kind == NFT_MSG_DELRULE:
            named = decode_string(dict(iter_attrs(body)).get(NFTA_RULE_TABLE, b""))
            # A flush of the table announces each rule: one event says it.
            if named == table and not (events and isinstance(events[-1], RulesDeleted)):
                events.append(RulesDeleted())
        elif kind in (NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM):
            found = decode_element_list(body, table=table, address_sets=_DENY_SCOPES)
            if found is not None:
                events += _element_events(found, added=kind == NFT_MSG_NEWSETELEM)
    return events


def _element_events(found: ElementList, *, added: bool) -> list[TableEvent]:
    scope = _DENY_SCOPES.get(found.set_name)
    if found.set_name not in (ALLOW4, ALLOW6) and scope is None:
        return []  # the rules' anonymous sets
    events: list[TableEvent] = []
    for element in found.elements:
        expiration = element.expiration_ms
        expires_in = None if expiration is None else expiration / 1000
        door = element.comment or ""
        if scope is not None:
            if element.service is not None or DENY_SETS[scope, element.address.version] != (
                found.set_name
            ):
                continue
            events.append(
                BanAdded(element.address, scope, door, expires_in)
                if added
                else BanDeleted(element.address, scope)
            )
            continue
        if element.service is None or set_for(element.address) != found.set_name:
            continue
        if not added:
            events.append(ElementDeleted(element.address, element.service))
            continue
        events.append(ElementAdded(element.address, element.service, door, expires_in))
    return events


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
