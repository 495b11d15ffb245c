"""Grants written straight to the kernel: one nf_tables netlink batch of set-element messages.

Why not libnftables for this one job: every `nft.cmd()` first refreshes libnftables' cache (a
dump of tables and sets, several netlink round trips) and parses the script, which costs
0.15-0.5 ms per grant, most of the knock-to-grant time. A grant is three fixed messages whose
bytes we can build in microseconds, so the daemon's hot path sends them itself. Everything else
(the ruleset, listings, revokes) stays with libnftables.

The batch is the same transaction `render_grant` spells in nft syntax: add (a no-op when the
element exists), delete, add with the new timeout and the door's name as comment, so a refresh
restarts the element's timer. The kernel applies the whole batch or none of it.

`encode_grant_batch` is pure; `SetElementSocket` is the thin adapter around a netlink socket.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from collections.abc import Iterable, Sequence
from typing import Final

from knocknft.core.grants import Grant, check_timeout, set_for
from knocknft.errors import NftError, TableMissing
from knocknft.netlink.nflog import (
    NETLINK_NETFILTER,
    NLA_F_NESTED,
    NLM_F_ACK,
    NLM_F_REQUEST,
    NLMSG_ERROR,
    NLMSG_HDRLEN,
    iter_messages,
    set_socket_buffer,
)

NFNL_SUBSYS_NFTABLES: Final = 10
NFNL_MSG_BATCH_BEGIN: Final = 0x10
NFNL_MSG_BATCH_END: Final = 0x11
NFT_MSG_NEWSETELEM: Final = 12
NFT_MSG_DELSETELEM: Final = 14

NLM_F_CREATE: Final = 0x400
NFPROTO_INET: Final = 1

NFTA_SET_ELEM_LIST_TABLE: Final = 1
NFTA_SET_ELEM_LIST_SET: Final = 2
NFTA_SET_ELEM_LIST_ELEMENTS: Final = 3
NFTA_LIST_ELEM: Final = 1
NFTA_SET_ELEM_KEY: Final = 1
NFTA_SET_ELEM_TIMEOUT: Final = 4
NFTA_SET_ELEM_USERDATA: Final = 6
NFTA_DATA_VALUE: Final = 1
# libnftnl's user-data TLV that `nft` shows as an element's comment.
NFTNL_UDATA_SET_ELEM_COMMENT: Final = 0

_PROTOCOL_NUMBERS: Final = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
_NLMSG: Final = struct.Struct("=IHHII")
_NLA: Final = struct.Struct("=HH")
_ACK_TIMEOUT: Final = 1.0
_SEND_BUFFER: Final = 4 << 20


def _attr(kind: int, payload: bytes) -> bytes:
    length = _NLA.size + len(payload)
    return _NLA.pack(length, kind) + payload + b"\0" * (-length % 4)


def _nest(kind: int, *attrs: bytes) -> bytes:
    return _attr(kind | NLA_F_NESTED, b"".join(attrs))


def _message(
    kind: int,
    flags: int,
    seq: int,
    body: bytes = b"",
    *,
    family: int = NFPROTO_INET,
    res_id: int = 0,
) -> bytes:
    # nfgenmsg: family, version 0, resource id in network order.
    header = struct.pack("=BB", family, 0) + struct.pack("!H", res_id)
    return _NLMSG.pack(_NLMSG.size + 4 + len(body), kind, flags, seq, 0) + header + body


def _batch_marker(kind: int, seq: int) -> bytes:
    # Batch markers name the subsystem in res_id, with no family.
    return _message(kind, NLM_F_REQUEST, seq, family=0, res_id=NFNL_SUBSYS_NFTABLES)


def element_key(grant: Grant) -> bytes:
    """The set key `address . inet_proto . inet_service`: each field padded to 4 bytes, as
    nftables lays out concatenations in its 32-bit registers."""
    service = grant.service
    return (
        grant.address.packed
        + struct.pack("=B3x", _PROTOCOL_NUMBERS[service.protocol])
        + struct.pack("!H2x", service.port)
    )


def _comment(text: str) -> bytes:
    value = text.encode() + b"\0"
    if len(value) > 128:
        raise ValueError(f"comment {text!r} is longer than nftables allows")
    return struct.pack("=BB", NFTNL_UDATA_SET_ELEM_COMMENT, len(value)) + value


def _element_list(
    table: str, set_name: str, key: bytes, timeout_ms: int | None, comment: str | None
) -> bytes:
    element = [_nest(NFTA_SET_ELEM_KEY, _attr(NFTA_DATA_VALUE, key))]
    if timeout_ms is not None:
        element.append(_attr(NFTA_SET_ELEM_TIMEOUT, struct.pack("!Q", timeout_ms)))
    if comment is not None:
        element.append(_attr(NFTA_SET_ELEM_USERDATA, _comment(comment)))
    return (
        _attr(NFTA_SET_ELEM_LIST_TABLE, table.encode() + b"\0")
        + _attr(NFTA_SET_ELEM_LIST_SET, set_name.encode() + b"\0")
        + _nest(NFTA_SET_ELEM_LIST_ELEMENTS, _nest(NFTA_LIST_ELEM, *element))
    )


def encode_grant_batch(table: str, grants: Sequence[Grant], first_seq: int) -> tuple[bytes, int]:
    """The batch for `grants`, numbered from `first_seq`; returns (bytes, the seq to await).

    Only the last element message asks for an ack: the kernel reports every failing message
    anyway and answers the whole batch before that ack, so one ack (not one per message, which
    overflows the socket for hundreds of grants) says the transaction is done.
    """
    new = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM
    delete = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELSETELEM
    seq = first_seq
    parts = [_batch_marker(NFNL_MSG_BATCH_BEGIN, seq)]
    for index, grant in enumerate(grants):
        timeout_ms = check_timeout(grant.timeout) * 1000
        key = element_key(grant)
        name = set_for(grant.address)
        last = index == len(grants) - 1
        steps = (
            (new, NLM_F_CREATE, timeout_ms, None),
            (delete, 0, None, None),
            (new, NLM_F_CREATE | (NLM_F_ACK if last else 0), timeout_ms, grant.door),
        )
        for kind, flags, timeout, comment in steps:
            seq += 1
            body = _element_list(table, name, key, timeout, comment)
            parts.append(_message(kind, NLM_F_REQUEST | flags, seq, body))
    parts.append(_batch_marker(NFNL_MSG_BATCH_END, seq + 1))
    return b"".join(parts), seq


def parse_acks(data: bytes) -> Iterable[tuple[int, int]]:
    """(sequence number, errno) of each NLMSG_ERROR in a netlink buffer; errno 0 is an ack."""
    for offset, length, kind, seq in iter_messages(data):
        if kind == NLMSG_ERROR and length >= NLMSG_HDRLEN + 4:
            (code,) = struct.unpack_from("=i", data, offset + NLMSG_HDRLEN)
            yield seq, -code


class SetElementSocket:
    """A netfilter netlink socket that writes grant batches and waits for the kernel's answer."""

    def __init__(self) -> None:
        try:
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
            self._sock.bind((0, 0))
            # A batch is one datagram: room for thousands of grants (a restore after a flush).
            set_socket_buffer(self._sock, _SEND_BUFFER, send=True)
        except OSError as exc:
            raise NftError(f"cannot open a netfilter netlink socket: {exc}") from exc
        self._seq = int(time.time()) & 0x3FFFFFFF

    def grant(self, table: str, grants: Sequence[Grant]) -> None:
        """Add or refresh `grants` in one transaction; raises NftError (TableMissing) if refused."""
        if not grants:
            return
        first = self._seq
        batch, last = encode_grant_batch(table, grants, first)
        self._seq = (last + 2) & 0x3FFFFFFF
        try:
            self._sock.send(batch)
            failure = self._await(first, last)
        except OSError as exc:
            raise NftError(f"set-element batch failed: {exc}") from exc
        if failure == errno.ENOENT:
            raise TableMissing(f"table inet {table} or its sets are missing")
        if failure:
            raise NftError(f"the kernel refused the grant: {os.strerror(failure)}")

    def _await(self, first: int, last: int) -> int:
        """Read answers until the ack of message `last`; the first error seen, or 0."""
        failure = 0
        deadline = time.monotonic() + _ACK_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._sock], [], [], left)[0]:
                raise NftError("the kernel did not answer a set-element batch in time")
            for seq, code in parse_acks(self._sock.recv(65536)):
                if not first <= seq <= last:
                    continue  # a late answer to an earlier batch
                failure = failure or code
                # An error pinned on the batch header (seq `first`) ends the batch too.
                if seq in (first, last):
                    return failure

    def close(self) -> None:
        self._sock.close()
