"""Grants written straight to the kernel: one nf_tables netlink batch of set-element messages.

Why not libnftables for this one job: every `nft.cmd()` first refreshes libnftables' cache (a
dump of tables and sets, several netlink round trips) and parses the script, which costs
0.15-0.5 ms per grant, most of the knock-to-grant time. A grant is three fixed messages whose
bytes we can build in microseconds, so the daemon's hot path sends them itself. Everything else
(the ruleset, listings, revokes) stays with libnftables.

The batch is the same transaction `render_grant` spells in nft syntax: add (a no-op when the
element exists), delete, add with the new timeout and the door's name as comment, so a refresh
restarts the element's timer. Elements to evict go first, as `revoke_transaction` spells them
(add for 1 s, delete): the room they leave is there for the grants of the same transaction.

The kernel applies the whole batch or none of it, but it answers each failing message with its
own error, so a refusal is pinned on its grant: the others are sent again without it, and one
grant that cannot go in (a full set: ENFILE) never takes the rest of its batch with it. Only the
first refusal of a batch is sure: in a batch that fails, the kernel still counts the elements
its earlier messages would have added, so a refresh after a refused grant is refused as well
(tests/integration/test_setelem.py). Each round therefore leaves out the first refused grant
alone; a batch of n grants that a full set refuses takes n + 1 rounds, which only happens when
elements the daemon did not add fill the set (knocknft.core.room keeps room otherwise).

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

from knocknft.config import IPAddress, PortSpec
from knocknft.core.grants import Grant, Refusal, check_timeout, set_for
from knocknft.core.ruleset import ALLOW_SET_SIZE
from knocknft.errors import BatchRefused, NftError, SetFull, TableMissing
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


def _element_body(
    table: str, address: IPAddress, service: PortSpec, timeout_ms: int | None, comment: str | None
) -> bytes:
    element = SetElement(address, service, timeout_ms=timeout_ms, comment=comment)
    return encode_element_list(ElementList(table, set_for(address), (element,)))


# Each eviction is two messages, each grant three, in this order after the batch header.
_EVICT_STEPS: Final = 2
_GRANT_STEPS: Final = 3
# The kernel's words for a set with no room: ENFILE from nft_add_set_elem; the others in case a
# kernel ever says it another way.
SET_FULL_ERRNOS: Final = frozenset((errno.ENFILE, errno.ENOSPC, errno.E2BIG))


def encode_grant_batch(
    table: str,
    grants: Sequence[Grant],
    first_seq: int,
    evictions: Sequence[tuple[IPAddress, PortSpec]] = (),
) -> tuple[bytes, int]:
    """The batch that evicts `evictions`, then adds `grants`, numbered from `first_seq`; returns
    (bytes, the seq to await). Message `first_seq + 1 + 2 * i` starts the i-th eviction, and
    `first_seq + 1 + 2 * len(evictions) + 3 * j` the j-th grant.

    Only the last element message asks for an ack: the kernel reports every failing message
    anyway and answers the whole batch before that ack, so one ack (not one per message, which
    overflows the socket for hundreds of grants) says the transaction is done.
    """
    new = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM
    delete = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELSETELEM
    steps: list[tuple[int, int, IPAddress, PortSpec, int | None, str | None]] = []
    for address, service in evictions:
        steps += [
            (new, NLM_F_CREATE, address, service, 1000, None),
            (delete, 0, address, service, None, None),
        ]
    for grant in grants:
        timeout_ms = check_timeout(grant.timeout) * 1000
        address, service = grant.address, grant.service
        steps += [
            (new, NLM_F_CREATE, address, service, timeout_ms, None),
            (delete, 0, address, service, None, None),
            (new, NLM_F_CREATE, address, service, timeout_ms, grant.door),
        ]
    seq = first_seq
    parts = [_batch_marker(NFNL_MSG_BATCH_BEGIN, seq)]
    for index, (kind, flags, address, service, timeout, comment) in enumerate(steps):
        seq += 1
        ack = NLM_F_ACK if index == len(steps) - 1 else 0
        body = _element_body(table, address, service, timeout, comment)
        message = nfgen_message(kind, NLM_F_REQUEST | flags | ack, seq, body, family=NFPROTO_INET)
        parts.append(message)
    parts.append(_batch_marker(NFNL_MSG_BATCH_END, seq + 1))
    return b"".join(parts), seq


def refusal_error(table: str, address: IPAddress, code: int) -> NftError:
    """The kernel's errno for one element as knocknft's error: a full set said plainly."""
    if code in SET_FULL_ERRNOS:
        return SetFull(
            f"set inet {table} {set_for(address)} is full ({ALLOW_SET_SIZE} elements): "
            "no new grant until one expires or gives way"
        )
    if code == errno.ENOENT:
        return TableMissing(f"table inet {table} or its sets are missing")
    return BatchRefused(f"the kernel refused the grant: {os.strerror(code)}")


class SetElementSocket:
    """A netfilter netlink socket that writes grant batches and waits for the kernel's answer."""

    def __init__(self) -> None:
        try:
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
            self._sock.bind((0, 0))
            # A batch is one datagram: room for thousands of grants (a restore after a flush).
            set_socket_buffer(self._sock, _SEND_BUFFER, send=True)
        except OSError as exc:
            raise BatchRefused(f"cannot open a netfilter netlink socket: {exc}") from exc
        self._seq = int(time.time()) & 0x3FFFFFFF

    def grant(
        self,
        table: str,
        grants: Sequence[Grant],
        evictions: Sequence[tuple[IPAddress, PortSpec]] = (),
    ) -> list[Refusal]:
        """Evict, then add or refresh `grants`: each grant the kernel refuses is left out and the
        rest sent again, so only the refused ones fail; returns them. Raises TableMissing when
        the table or its sets are gone, NftError when the socket or the batch as a whole failed."""
        pending, evicting = list(grants), list(evictions)
        refused: list[Refusal] = []
        while pending or evicting:
            failed = self._send(table, pending, evicting)
            if not failed:
                break
            # Each round takes one grant or eviction out, so this ends.
            first = min(failed)
            if first < len(evicting):
                del evicting[first]  # already gone, or the set is gone: TableMissing follows
                continue
            grant = pending.pop(first - len(evicting))
            error = refusal_error(table, grant.address, failed[first])
            if isinstance(error, TableMissing):
                raise error
            refused.append(Refusal(grant, error))
        return refused

    def _send(
        self,
        table: str,
        grants: Sequence[Grant],
        evictions: Sequence[tuple[IPAddress, PortSpec]],
    ) -> dict[int, int]:
        """One batch; {index of the failed item (evictions first, then grants): errno}."""
        first = self._seq
        batch, last = encode_grant_batch(table, grants, first, evictions)
        self._seq = (last + 2) & 0x3FFFFFFF
        try:
            self._sock.send(batch)
            errors = self._await(first, last)
        except OSError as exc:
            raise NftError(f"set-element batch failed: {exc}") from exc
        failed: dict[int, int] = {}
        grants_from = first + 1 + _EVICT_STEPS * len(evictions)
        for seq, code in errors:
            if first < seq < grants_from:
                index = (seq - first - 1) // _EVICT_STEPS
            elif grants_from <= seq <= last:
                index = len(evictions) + (seq - grants_from) // _GRANT_STEPS
            elif code == errno.ENOENT:
                raise TableMissing(f"table inet {table} or its sets are missing")
            else:  # the batch header: nothing in the batch is to blame alone
                raise BatchRefused(f"the kernel refused a set-element batch: {os.strerror(code)}")
            # A grant's first refusal says why; what follows in it (a delete of the element
            # its add did not make) only echoes it.
            failed.setdefault(index, code)
        return failed

    def _await(self, first: int, last: int) -> list[tuple[int, int]]:
        """Read answers until the ack of message `last`; every (seq, errno) refused on the way."""
        errors: list[tuple[int, int]] = []
        deadline = time.monotonic() + _ACK_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._sock], [], [], left)[0]:
                raise NftError("the kernel did not answer a set-element batch in time")
            for seq, code in iter_acks(self._sock.recv(65536)):
                if not first <= seq <= last:
                    continue  # a late answer to an earlier batch
                if code:
                    errors.append((seq, code))
                # An error pinned on the batch header (seq `first`) ends the batch too.
                if seq in (first, last):
                    return errors

    def close(self) -> None:
        self._sock.close()
