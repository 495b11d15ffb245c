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
import time
from collections.abc import Sequence
from typing import Final

from knocknft.core.grants import Grant, check_timeout, set_for
from knocknft.errors import NftError, TableMissing
from knocknft.netlink.base import (
    NETLINK_NETFILTER,
    NFNL_MSG_BATCH_BEGIN,
    NFNL_MSG_BATCH_END,
    NFNL_SUBSYS_NFTABLES,
    NFPROTO_INET,
    NFT_MSG_DELSETELEM,
    NFT_MSG_NEWSETELEM,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_REQUEST,
    iter_acks,
    nfgen_message,
    set_socket_buffer,
)
from knocknft.netlink.element import ElementList, SetElement, encode_element_list

_ACK_TIMEOUT: Final = 1.0
_SEND_BUFFER: Final = 4 << 20


def _batch_marker(kind: int, seq: int) -> bytes:
    # Batch markers name the subsystem in res_id, with no family.
    return nfgen_message(kind, NLM_F_REQUEST, seq, family=0, res_id=NFNL_SUBSYS_NFTABLES)


def _element_body(table: str, grant: Grant, timeout_ms: int | None, comment: str | None) -> bytes:
    element = SetElement(grant.address, grant.service, timeout_ms=timeout_ms, comment=comment)
    return encode_element_list(ElementList(table, set_for(grant.address), (element,)))


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
        last = index == len(grants) - 1
        steps = (
            (new, NLM_F_CREATE, timeout_ms, None),
            (delete, 0, None, None),
            (new, NLM_F_CREATE | (NLM_F_ACK if last else 0), timeout_ms, grant.door),
        )
        for kind, flags, timeout, comment in steps:
            seq += 1
            body = _element_body(table, grant, timeout, comment)
            parts.append(nfgen_message(kind, NLM_F_REQUEST | flags, seq, body, family=NFPROTO_INET))
    parts.append(_batch_marker(NFNL_MSG_BATCH_END, seq + 1))
    return b"".join(parts), seq


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
            for seq, code in iter_acks(self._sock.recv(65536)):
                if not first <= seq <= last:
                    continue  # a late answer to an earlier batch
                failure = failure or code
                # An error pinned on the batch header (seq `first`) ends the batch too.
                if seq in (first, last):
                    return failure

    def close(self) -> None:
        self._sock.close()
